import * as tf from '../tf.js';
import { EXPANSION, STAGE_PLAN } from './architecture.js';
import { leaves, stageOf, type ResNet50 } from './resnet50.js';
import { float32Tensor, parseSafetensors, safetensorsChunks, toFloat32, type RawTensor } from './safetensors.js';

/** One torchvision state_dict entry and where it lives in the tfjs model. */
interface TensorBinding {
  torchName: string;
  torchShape: number[];
  layer: tf.layers.Layer;
  weightIndex: number;
  /** Axis permutation from the torch layout to tfjs' (and back, inverted). */
  permutation?: number[];
}

const CONV_OIHW_TO_HWIO = [2, 3, 1, 0];

function bindings(resnet: ResNet50): TensorBinding[] {
  const out: TensorBinding[] = [];
  for (const leaf of leaves(resnet.tree)) {
    const layer = leaf.layer;
    if (!layer) continue;
    const shapes = layer.weights.map((w) => w.shape as number[]);
    const bind = (suffix: string, weightIndex: number, torchShape: number[], permutation?: number[]) =>
      out.push({ torchName: `${leaf.path}.${suffix}`, torchShape, layer, weightIndex, permutation });
    if (leaf.type === 'Conv2d') {
      const [kh, kw, cin, cout] = shapes[0];
      bind('weight', 0, [cout, cin, kh, kw], CONV_OIHW_TO_HWIO);
    } else if (leaf.type === 'Linear') {
      const [inputs, units] = shapes[0];
      bind('weight', 0, [units, inputs], [1, 0]);
      bind('bias', 1, [units]);
    } else if (leaf.type === 'BatchNorm2d') {
      ['weight', 'bias', 'running_mean', 'running_var'].forEach((suffix, i) => bind(suffix, i, shapes[i]));
    }
  }
  return out;
}

export class WeightsMismatchError extends Error {
  constructor(
    readonly missing: string[],
    readonly unexpected: string[],
    readonly misshaped: string[],
  ) {
    const parts = [
      missing.length ? `missing ${missing.length}: ${missing.join(', ')}` : '',
      unexpected.length ? `unexpected ${unexpected.length}: ${unexpected.join(', ')}` : '',
      misshaped.length ? `mis-shaped ${misshaped.length}: ${misshaped.join(', ')}` : '',
    ].filter(Boolean);
    super(`weights do not match torchvision's resnet50 for this model (${parts.join('; ')})`);
  }
}

export interface ImportOptions {
  /**
   * `all`: every tensor of the model (pretrained, or a checkpoint of the same mode and classes).
   * `backbone`: everything but `fc`, for a new head on ImageNet weights; the file's `fc.*` is ignored.
   * `frozen`: the layers that do not train, from a file that holds at least those (a job's copy of its
   * start weights, or a whole backbone); the file's other tensors are checked for name only, and ignored.
   */
  scope: 'all' | 'backbone' | 'frozen';
}

const isBookkeeping = (name: string) => name.endsWith('.num_batches_tracked');

/**
 * Refuses (WeightsMismatchError, naming every fault) tensors that are not exactly `wanted`: with scope
 * `backbone`, the file's `fc.*` is left out of the comparison; `num_batches_tracked` never counts. With
 * `required`, only those of `wanted` must be present (a file of the frozen layers' tensors).
 */
export function checkTensorNames(
  wanted: Map<string, number[]>,
  tensors: Map<string, RawTensor>,
  scope: Exclude<ImportOptions['scope'], 'frozen'>,
  required: (name: string) => boolean = () => true,
): void {
  const compared = (name: string) => scope === 'all' || stageOf(name) !== 'fc';
  const missing = [...wanted.keys()].filter((name) => compared(name) && required(name) && !tensors.has(name));
  const unexpected = [...tensors.keys()].filter((name) => !wanted.has(name) && !isBookkeeping(name) && compared(name));
  const misshaped = [...wanted].flatMap(([name, expected]) => {
    const shape = tensors.get(name)?.shape;
    return compared(name) && shape && shape.join() !== expected.join()
      ? [`${name} [${shape.join(',')}] (expected [${expected.join(',')}])`]
      : [];
  });
  if (missing.length || unexpected.length || misshaped.length) throw new WeightsMismatchError(missing, unexpected, misshaped);
}

/** torchvision resnet50's state_dict, every name with its shape (num_batches_tracked aside), from the architecture alone. */
export function torchvisionResnet50Shapes(numClasses = 1000): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const batchNorm = (prefix: string, channels: number) =>
    ['weight', 'bias', 'running_mean', 'running_var'].forEach((suffix) => shapes.set(`${prefix}.${suffix}`, [channels]));
  shapes.set('conv1.weight', [64, 3, 7, 7]);
  batchNorm('bn1', 64);
  let inputs = 64;
  STAGE_PLAN.forEach(([blocks, width], stage) => {
    for (let block = 0; block < blocks; block++) {
      const path = `layer${stage + 1}.${block}`;
      shapes.set(`${path}.conv1.weight`, [width, inputs, 1, 1]);
      batchNorm(`${path}.bn1`, width);
      shapes.set(`${path}.conv2.weight`, [width, width, 3, 3]);
      batchNorm(`${path}.bn2`, width);
      shapes.set(`${path}.conv3.weight`, [width * EXPANSION, width, 1, 1]);
      batchNorm(`${path}.bn3`, width * EXPANSION);
      if (block === 0) {
        shapes.set(`${path}.downsample.0.weight`, [width * EXPANSION, inputs, 1, 1]);
        batchNorm(`${path}.downsample.1`, width * EXPANSION);
      }
      inputs = width * EXPANSION;
    }
  });
  shapes.set('fc.weight', [numClasses, inputs]);
  shapes.set('fc.bias', [numClasses]);
  return shapes;
}

/** Loads torchvision-named safetensors (F32, F16, BF16 or F64) into the model, checking every name and shape. */
export function importTorchvisionWeights(resnet: ResNet50, file: Uint8Array, options: ImportOptions): void {
  const tensors = parseSafetensors(file);
  const all = bindings(resnet);
  const frozen = new Set(frozenBindings(all).map((b) => b.torchName));
  const imported = (name: string) => options.scope !== 'frozen' || frozen.has(name);
  const wanted = all.filter((b) => (options.scope === 'all' || stageOf(b.torchName) !== 'fc') && imported(b.torchName));
  const shapes = new Map(all.map((b) => [b.torchName, b.torchShape]));
  checkTensorNames(shapes, tensors, options.scope === 'all' ? 'all' : 'backbone', imported);

  const byLayer = new Map<tf.layers.Layer, tf.Tensor[]>();
  tf.tidy(() => {
    for (const b of wanted) {
      const stored = tensors.get(b.torchName);
      if (!stored) continue; // checked above: every wanted tensor is present
      const raw = tf.tensor(toFloat32(stored), b.torchShape, 'float32');
      const values = byLayer.get(b.layer) ?? b.layer.getWeights();
      values[b.weightIndex] = b.permutation ? tf.transpose(raw, b.permutation) : raw;
      byLayer.set(b.layer, values);
    }
    for (const [layer, values] of byLayer) layer.setWeights(values);
  });
}

/**
 * The whole model as torchvision-named safetensors: `load_state_dict(..., strict=True)` takes it on a
 * torchvision resnet50 whose `fc` is replaced by the same head (Linear, or the fine-tuning Sequential).
 */
export function exportTorchvisionWeights(resnet: ResNet50): Buffer {
  return Buffer.concat(torchvisionWeightChunks(resnet));
}

const frozenBindings = (all: TensorBinding[]) => all.filter((b) => !b.layer.trainable);

/**
 * exportTorchvisionWeights in pieces, for a store to write without a second copy of the model; `frozen`:
 * only the tensors of the layers that do not train (what a job's checkpoints read from its start weights).
 */
export function torchvisionWeightChunks(resnet: ResNet50, { frozen = false } = {}): Uint8Array[] {
  const tensors = new Map<string, RawTensor>();
  const all = bindings(resnet);
  tf.tidy(() => {
    for (const b of frozen ? frozenBindings(all) : all) {
      const value = b.layer.getWeights()[b.weightIndex];
      const torchValue = b.permutation ? tf.transpose(value, inverse(b.permutation)) : value;
      tensors.set(b.torchName, float32Tensor(b.torchShape, torchValue.dataSync() as Float32Array));
      if (b.torchName.endsWith('.running_var')) {
        const counter = b.torchName.replace(/running_var$/, 'num_batches_tracked');
        tensors.set(counter, { dtype: 'I64', shape: [], bytes: new Uint8Array(8) });
      }
    }
  });
  return safetensorsChunks(tensors, { format: 'pt' });
}

function inverse(permutation: number[]): number[] {
  const out = new Array<number>(permutation.length);
  permutation.forEach((axis, i) => (out[axis] = i));
  return out;
}
