import * as tf from '@tensorflow/tfjs';
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
   */
  scope: 'all' | 'backbone';
}

const isBookkeeping = (name: string) => name.endsWith('.num_batches_tracked');

/** Loads torchvision-named safetensors (F32, F16, BF16 or F64) into the model, checking every name and shape. */
export function importTorchvisionWeights(resnet: ResNet50, file: Uint8Array, options: ImportOptions): void {
  const tensors = parseSafetensors(file);
  const wanted = bindings(resnet).filter((b) => options.scope === 'all' || stageOf(b.torchName) !== 'fc');
  const wantedNames = new Set(wanted.map((b) => b.torchName));
  const missing = wanted.filter((b) => !tensors.has(b.torchName)).map((b) => b.torchName);
  const unexpected = [...tensors.keys()].filter(
    (name) => !wantedNames.has(name) && !isBookkeeping(name) && !(options.scope === 'backbone' && stageOf(name) === 'fc'),
  );
  const misshaped = wanted.flatMap((b) => {
    const shape = tensors.get(b.torchName)?.shape;
    return shape && shape.join() !== b.torchShape.join()
      ? [`${b.torchName} [${shape.join(',')}] (expected [${b.torchShape.join(',')}])`]
      : [];
  });
  if (missing.length || unexpected.length || misshaped.length) throw new WeightsMismatchError(missing, unexpected, misshaped);

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

/** exportTorchvisionWeights in pieces, for a store to write without a second copy of the model. */
export function torchvisionWeightChunks(resnet: ResNet50): Uint8Array[] {
  const tensors = new Map<string, RawTensor>();
  tf.tidy(() => {
    for (const b of bindings(resnet)) {
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
