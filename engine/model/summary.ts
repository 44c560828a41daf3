import type * as tf from '../tf.js';
import { MAX_SUMMARY_DEPTH, type ModelSummary, type SummaryRow } from '../../schemas/model.js';
import { BatchNorm2d } from './batch-norm.js';
import { leaves, type ModuleNode, type ResNet50 } from './resnet50.js';

const BYTES_PER_FLOAT = 4;

function parameterWeights(layer: tf.layers.Layer): tf.LayerVariable[] {
  const buffers = layer instanceof BatchNorm2d ? new Set(layer.buffers) : new Set<tf.LayerVariable>();
  return layer.weights.filter((w) => !buffers.has(w));
}

const sizeOf = (shape: readonly (number | null)[]) => shape.reduce<number>((n, d) => n * (d ?? 1), 1);

interface Counts {
  params: number;
  trainable: number;
}

function countParams(node: ModuleNode): Counts {
  let params = 0;
  let trainable = 0;
  for (const leaf of leaves(node)) {
    if (!leaf.layer) continue;
    for (const weight of parameterWeights(leaf.layer)) {
      const n = sizeOf(weight.shape);
      params += n;
      if (leaf.layer.trainable && weight.trainable) trainable += n;
    }
  }
  return { params, trainable };
}

/** NHWC (batch null) -> torch's NCHW with batch 1, as torchinfo prints for input (1, 3, S, S). */
function torchShape(shape: readonly (number | null)[]): number[] {
  const dims = shape.slice(1) as number[];
  return dims.length === 3 ? [1, dims[2], dims[0], dims[1]] : [1, ...dims];
}

/**
 * Mult-adds the way torchinfo counts them for a leaf: a conv's weight elements times the output's
 * spatial size, any other parameter (BN affine, linear weight and bias) once per sample.
 */
function multAdds(leaf: ModuleNode): number {
  if (!leaf.layer) return 0;
  const out = torchShape(leaf.output.shape);
  return parameterWeights(leaf.layer).reduce((sum, weight) => {
    const n = sizeOf(weight.shape);
    return sum + (leaf.type === 'Conv2d' ? n * sizeOf(out.slice(2)) : n);
  }, 0);
}

const megabytes = (bytes: number) => Math.round(bytes / 1e4) / 100;

export function summarize(resnet: ResNet50, depth = MAX_SUMMARY_DEPTH): ModelSummary {
  if (!Number.isInteger(depth) || depth < 0 || depth > MAX_SUMMARY_DEPTH) {
    throw new RangeError(`depth must be an integer from 0 to ${MAX_SUMMARY_DEPTH}`);
  }
  const rows: SummaryRow[] = [];
  const indexAtDepth: number[] = [];
  const visit = (node: ModuleNode, level: number) => {
    const counts = countParams(node);
    const expanded = node.children.length > 0 && level < depth;
    indexAtDepth[level] = (indexAtDepth[level] ?? 0) + 1;
    rows.push({
      depth: level,
      depthIndex: level === 0 ? '' : `${level}-${indexAtDepth[level]}`,
      type: node.type,
      varName: node.varName,
      name: node.path,
      outputShape: torchShape(node.output.shape),
      params: counts.params,
      trainableParams: counts.trainable,
      showsParams: counts.params > 0 && !expanded,
    });
    if (expanded) for (const child of node.children) visit(child, level + 1);
  };
  visit(resnet.tree, 0);

  const { params, trainable } = countParams(resnet.tree);
  let totalMultAdds = 0;
  let outputElements = 0;
  for (const leaf of leaves(resnet.tree)) {
    if (!leaf.layer || parameterWeights(leaf.layer).length === 0) continue;
    totalMultAdds += multAdds(leaf);
    outputElements += sizeOf(torchShape(leaf.output.shape));
  }
  const { inputSize } = resnet.config;
  const inputBytes = 3 * inputSize * inputSize * BYTES_PER_FLOAT;
  // x2: torchinfo counts each output once for the forward pass and once for its gradient.
  const forwardBackwardPassBytes = 2 * outputElements * BYTES_PER_FLOAT;
  const paramsBytes = params * BYTES_PER_FLOAT;
  const estimatedTotalBytes = inputBytes + forwardBackwardPassBytes + paramsBytes;
  return {
    mode: resnet.config.mode,
    inputSize,
    numClasses: resnet.config.numClasses,
    depth,
    rows,
    totals: {
      totalParams: params,
      trainableParams: trainable,
      nonTrainableParams: params - trainable,
      multAdds: totalMultAdds,
      inputBytes,
      forwardBackwardPassBytes,
      paramsBytes,
      estimatedTotalBytes,
      inputSizeMB: megabytes(inputBytes),
      forwardBackwardPassSizeMB: megabytes(forwardBackwardPassBytes),
      paramsSizeMB: megabytes(paramsBytes),
      estimatedTotalSizeMB: megabytes(estimatedTotalBytes),
    },
  };
}
