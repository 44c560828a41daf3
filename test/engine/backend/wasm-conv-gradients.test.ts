import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../../engine/backend/backend.js';
import { buildResNet50, leaves } from '../../../engine/model/resnet50.js';

interface ConvCase {
  input: [number, number, number, number];
  kernel: number;
  stride: number;
  padding: 'same' | 'valid';
  filters: number;
}

/** Every distinct convolution of ResNet-50 at input 32 (batch 2), read off the model itself. */
async function resnetConvCases(): Promise<ConvCase[]> {
  await selectBackend('cpu');
  const resnet = buildResNet50({ mode: 'pretrained', numClasses: 1000, inputSize: 32 });
  const cases = new Map<string, ConvCase>();
  for (const leaf of leaves(resnet.tree)) {
    if (leaf.type !== 'Conv2d') continue;
    const config = leaf.layer!.getConfig() as { kernelSize: number[]; strides: number[]; padding: string; filters: number };
    const [, h, w, c] = (leaf.layer!.input as tf.SymbolicTensor).shape as number[];
    const item: ConvCase = {
      input: [2, h, w, c],
      kernel: config.kernelSize[0],
      stride: config.strides[0],
      padding: config.padding as 'same' | 'valid',
      filters: config.filters,
    };
    cases.set(JSON.stringify(item), item);
  }
  resnet.model.dispose();
  return [...cases.values()];
}

function gradients(c: ConvCase, x: tf.Tensor4D, filter: tf.Tensor4D, weights: tf.Tensor4D) {
  const grad = tf.grads((a, f) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, f as tf.Tensor4D, c.stride, c.padding), weights)));
  const [dx, dFilter] = grad([x, filter]);
  return { dx: dx.dataSync().slice() as Float32Array, dFilter: dFilter.dataSync().slice() as Float32Array };
}

function relativeError(ours: Float32Array, reference: Float32Array): number {
  let maxError = 0;
  let maxReference = 0;
  for (let i = 0; i < reference.length; i++) {
    maxError = Math.max(maxError, Math.abs(ours[i] - reference[i]));
    maxReference = Math.max(maxReference, Math.abs(reference[i]));
  }
  return maxError / maxReference;
}

describe('wasm convolution gradients', () => {
  it('match the cpu backend over every conv shape ResNet-50 has', async () => {
    const cases = await resnetConvCases();
    const geometries = new Set(cases.map((c) => `${c.kernel}x${c.kernel}/${c.stride} ${c.padding}`));
    assert.deepEqual([...geometries].sort(), ['1x1/1 valid', '1x1/2 valid', '3x3/1 same', '3x3/2 valid', '7x7/2 valid']);
    const data = cases.map((c, i) => {
      const x = tf.randomNormal(c.input, 0, 1, 'float32', i).dataSync().slice();
      const filterShape = [c.kernel, c.kernel, c.input[3], c.filters] as const;
      const filter = tf
        .randomNormal([...filterShape], 0, 0.1, 'float32', 1000 + i)
        .dataSync()
        .slice();
      const outShape = tf.conv2d(tf.zeros<tf.Rank.R4>(c.input), tf.zeros<tf.Rank.R4>([...filterShape]), c.stride, c.padding).shape;
      const weights = tf
        .randomNormal(outShape, 0, 1, 'float32', 2000 + i)
        .dataSync()
        .slice();
      return { x, filter, filterShape, weights, outShape };
    });
    const run = () =>
      cases.map((c, i) => {
        const d = data[i];
        return tf.tidy(() =>
          gradients(c, tf.tensor4d(d.x, c.input), tf.tensor4d(d.filter, [...d.filterShape]), tf.tensor4d(d.weights, d.outShape as never)),
        );
      });
    const reference = run();
    await selectBackend('wasm');
    assert.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm'), 'wasm has a filter-gradient kernel once selected');
    const before = tf.engine().backend.numDataIds();
    const ours = run();
    assert.equal(tf.engine().backend.numDataIds(), before, 'the kernels free their intermediates');
    cases.forEach((c, i) => {
      const label = `${c.kernel}x${c.kernel}/${c.stride} ${c.padding} on [${c.input}] -> ${c.filters}`;
      assert.ok(relativeError(ours[i].dFilter, reference[i].dFilter) <= 1e-4, `filter gradient ${label}`);
      assert.ok(relativeError(ours[i].dx, reference[i].dx) <= 1e-4, `input gradient ${label}`);
    });
  });
});
