import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../../../engine/tf.js';
import { float32TensorOf } from '../../../engine/model/tensor-values.js';
import { useTestBackend } from '../../helpers/tf.js';

describe('float32TensorOf', () => {
  let backend: string;
  before(async () => {
    await useTestBackend();
    backend = tf.getBackend();
  });
  after(() => tf.setBackend(backend));

  for (const name of ['wasm', 'cpu']) {
    it(`fills a tensor with its parts in order and leaks nothing on ${name}`, async () => {
      await tf.setBackend(name);
      const parts = [Float32Array.of(1, 2, 3), Float32Array.of(4, 5, 6)];
      const start = tf.memory().numTensors;
      const tensor = float32TensorOf(parts, [2, 1, 3]);
      assert.deepEqual(tensor.shape, [2, 1, 3]);
      assert.deepEqual(Array.from(tensor.dataSync()), [1, 2, 3, 4, 5, 6]);
      // Its own memory: changing a part later does not change the tensor.
      parts[0][0] = 9;
      assert.equal(tensor.dataSync()[0], 1);
      tensor.dispose();
      assert.equal(tf.memory().numTensors, start);
      assert.throws(() => float32TensorOf(parts, [2, 2, 3]), /6 values do not fill a tensor of shape \[2, 2, 3\]/);
      assert.equal(tf.memory().numTensors, start);
    });
  }
});
