import type * as tf from '@tensorflow/tfjs';
import { BatchNorm2d } from './batch-norm.js';
import { leaves, type ModuleNode, type ResNet50 } from './resnet50.js';

export interface SummaryRow {
  depth: number;
  /** torchinfo's depth-idx, e.g. "2-4"; empty for the model row. */
  depthIndex: string;
  type: string;
  varName: string;
  /** Full torchvision module path, e.g. "layer2.0.conv2" (the same name as in state_dict keys). */
  name: string;
  outputShape: number[];
  params: number;
  trainableParams: number;
  /** Whether the table shows the count on this row (torchinfo prints "--" for expanded containers). */
  showsParams: boolean;
}

export interface ModelSummary {
  mode: string;
  inputSize: number;
  numClasses: number;
  depth: number;
  rows: SummaryRow[];
  totals: {
    totalParams: number;
    trainableParams: number;
    nonTrainableParams: number;
    multAdds: number;
    inputBytes: number;
    forwardBackwardPassBytes: number;
    paramsBytes: number;
    estimatedTotalBytes: number;
    inputSizeMB: number;
    forwardBackwardPassSizeMB: number;
    paramsSizeMB: number;
    estimatedTotalSizeMB: number;
  };
}

const BYTES_PER_FLOAT = 4;
export const MAX_SUMMARY_DEPTH = 3;

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

const thousands = (n: number) => n.toLocaleString('en-US');

function readableMultAdds(n: number): string {
  if (n >= 1e12) return `(T): ${(n / 1e12).toFixed(2)}`;
  if (n >= 1e9) return `(G): ${(n / 1e9).toFixed(2)}`;
  return `(M): ${(n / 1e6).toFixed(2)}`;
}

function paramCell(row: SummaryRow): string {
  if (!row.showsParams) return '--';
  return row.trainableParams > 0 ? thousands(row.params) : `(${thousands(row.params)})`;
}

function layerCell(row: SummaryRow): string {
  if (row.depth === 0) return `${row.type} (${row.varName})`;
  const branch = row.depth === 1 ? '├─' : `${'│    '.repeat(row.depth - 1)}└─`;
  return `${branch}${row.type} (${row.varName}): ${row.depthIndex}`;
}

/** The summary laid out like torchinfo's table; frozen parameter counts are in parentheses. */
export function renderSummaryText(summary: ModelSummary): string {
  const firstWidth = Math.max(40, ...summary.rows.map((r) => layerCell(r).length + 2));
  const colWidth = 25;
  const rule = '='.repeat(firstWidth + 2 * colWidth);
  const line = (a: string, b: string, c: string) => `${a.padEnd(firstWidth)}${b.padEnd(colWidth)}${c}`.trimEnd();
  const t = summary.totals;
  return [
    rule,
    line('Layer (type (var_name):depth-idx)', 'Output Shape', 'Param #'),
    rule,
    ...summary.rows.map((r) => line(layerCell(r), `[${r.outputShape.join(', ')}]`, paramCell(r))),
    rule,
    `Total params: ${thousands(t.totalParams)}`,
    `Trainable params: ${thousands(t.trainableParams)}`,
    `Non-trainable params: ${thousands(t.nonTrainableParams)}`,
    `Total mult-adds ${readableMultAdds(t.multAdds)}`,
    rule,
    `Input size (MB): ${t.inputSizeMB.toFixed(2)}`,
    `Forward/backward pass size (MB): ${t.forwardBackwardPassSizeMB.toFixed(2)}`,
    `Params size (MB): ${t.paramsSizeMB.toFixed(2)}`,
    `Estimated Total Size (MB): ${t.estimatedTotalSizeMB.toFixed(2)}`,
    rule,
    '',
  ].join('\n');
}

/**
 * The same summary at a shallower depth, derived from a deeper one: the rows to `depth`, where a row
 * at the new bottom shows its total and an expanded one shows "--", as torchinfo does.
 */
export function summaryAtDepth(summary: ModelSummary, depth: number): ModelSummary {
  if (!Number.isInteger(depth) || depth < 0 || depth > summary.depth) {
    throw new RangeError(`depth must be an integer from 0 to ${summary.depth}`);
  }
  const rows = summary.rows.flatMap((row, i) => {
    if (row.depth > depth) return [];
    const expanded = (summary.rows[i + 1]?.depth ?? -1) > row.depth && row.depth < depth;
    return [{ ...row, showsParams: row.params > 0 && !expanded }];
  });
  return { ...summary, depth, rows };
}
