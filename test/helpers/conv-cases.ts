import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '../../engine/tf.js';
import { buildResNet50, leaves } from '../../engine/model/resnet50.js';
import { float32ValuesOf } from '../../engine/model/tensor-values.js';
import { readFloat32, tempDir, torchReference } from './torch.js';

export interface ConvCase {
  input: [number, number, number, number];
  kernel: number;
  stride: number;
  padding: 'same' | 'valid';
  filters: number;
}

/** Every distinct convolution of ResNet-50 at `inputSize` (batch `batch`), read off the model itself (build it on any backend). */
export function resnetConvCases(inputSize = 32, batch = 2): ConvCase[] {
  const resnet = buildResNet50({ mode: 'pretrained', numClasses: 1000, inputSize });
  const cases = new Map<string, ConvCase>();
  for (const leaf of leaves(resnet.tree)) {
    if (leaf.type !== 'Conv2d' || !leaf.layer) continue;
    const config = leaf.layer.getConfig() as { kernelSize: number[]; strides: number[]; padding: string; filters: number };
    const [, h, w, c] = (leaf.layer.input as tf.SymbolicTensor).shape as number[];
    const item: ConvCase = {
      input: [batch, h, w, c],
      kernel: config.kernelSize[0],
      stride: config.strides[0],
      padding: config.padding as 'same' | 'valid',
      filters: config.filters,
    };
    cases.set(JSON.stringify(item), item);
  }
  resnet.dispose();
  return [...cases.values()];
}

/** Seeded inputs of a case: x, its filter, and the weights that make the loss sum(w * conv(x, filter)). */
export function caseData(c: ConvCase, seed: number) {
  const filterShape: [number, number, number, number] = [c.kernel, c.kernel, c.input[3], c.filters];
  const outShape = tf.tidy(() => tf.conv2d(tf.zeros<tf.Rank.R4>(c.input), tf.zeros<tf.Rank.R4>(filterShape), c.stride, c.padding).shape);
  return {
    x: float32ValuesOf(() => tf.randomNormal(c.input, 0, 1, 'float32', seed)),
    filter: float32ValuesOf(() => tf.randomNormal(filterShape, 0, 0.1, 'float32', 1000 + seed)),
    weights: float32ValuesOf(() => tf.randomNormal(outShape, 0, 1, 'float32', 2000 + seed)),
    filterShape,
    outShape,
  };
}

export type CaseData = ReturnType<typeof caseData>;

export interface ConvResults {
  y: Float32Array;
  dx: Float32Array;
  dFilter: Float32Array;
}

/** The forward output and both gradients of a case on the active backend. */
export function convResults(c: ConvCase, d: CaseData): ConvResults {
  const x = tf.tensor4d(d.x, c.input);
  const filter = tf.tensor4d(d.filter, d.filterShape);
  const weights = tf.tensor(d.weights, d.outShape);
  const y = tf.conv2d(x, filter, c.stride, c.padding);
  const [dx, dFilter] = tf.tidy(() =>
    tf.grads((a, f) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, f as tf.Tensor4D, c.stride, c.padding), weights)))([x, filter]),
  );
  const results = { y: y.dataSync() as Float32Array, dx: dx.dataSync() as Float32Array, dFilter: dFilter.dataSync() as Float32Array };
  tf.dispose([x, filter, weights, y, dx, dFilter]);
  return results;
}

/** The same results from PyTorch (Debian's python3-torch): the reference for the kernels in tfjs' layouts. */
export function torchConvResults(cases: ConvCase[], data: CaseData[]): ConvResults[] {
  const dir = tempDir('conv-cases');
  try {
    writeFileSync(path.join(dir, 'cases.json'), JSON.stringify(cases));
    data.forEach((d, i) => {
      for (const part of ['x', 'filter', 'weights'] as const) writeFileSync(path.join(dir, `${part}-${i}.f32`), d[part]);
    });
    torchReference(['conv', '--dir', dir]);
    return cases.map((_, i) => ({
      y: readFloat32(path.join(dir, `y-${i}.f32`)),
      dx: readFloat32(path.join(dir, `dx-${i}.f32`)),
      dFilter: readFloat32(path.join(dir, `dfilter-${i}.f32`)),
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The largest difference relative to the largest reference value. */
export function relativeError(ours: ArrayLike<number>, reference: ArrayLike<number>): number {
  if (ours.length !== reference.length) throw new Error(`length ${ours.length} != ${reference.length}`);
  let maxError = 0;
  let maxReference = 0;
  for (let i = 0; i < reference.length; i++) {
    maxError = Math.max(maxError, Math.abs(ours[i] - reference[i]));
    maxReference = Math.max(maxReference, Math.abs(reference[i]));
  }
  return maxError / maxReference;
}
