import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../../../engine/tf.js';
import { bfloat16Of, float32TensorOf } from '../../../engine/model/tensor-values.js';
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

    it(`widens bfloat16 parts exactly, beside float32 ones, on ${name}`, async () => {
      await tf.setBackend(name);
      const floats = Float32Array.of(1.5, -0.15625, 3e38, -0, 1e-40, Infinity);
      const tensor = float32TensorOf([bfloat16Of(floats), Float32Array.of(0.1)], [7]);
      assert.deepEqual(Array.from(tensor.dataSync()), [
        1.5,
        -0.15625,
        3.00405527047391e38,
        -0,
        9.183549615799121e-41,
        Infinity,
        Math.fround(0.1),
      ]);
      tensor.dispose();
    });
  }
});

describe('bfloat16Of', () => {
  const bitsOf = (...words: number[]) => new Float32Array(Uint32Array.from(words).buffer);
  it('rounds to nearest, ties to even, as oneDNN narrows float32', () => {
    const rounded = bfloat16Of(bitsOf(0x3f800000, 0x3f808000, 0x3f818000, 0x3f80c000, 0x3f807fff, 0xbf808001, 0x7f7fffff, 0x80000000));
    assert.deepEqual(Array.from(rounded), [0x3f80, 0x3f80, 0x3f82, 0x3f81, 0x3f80, 0xbf81, 0x7f80, 0x8000]);
  });
  it('keeps NaN a NaN and infinities infinite', () => {
    const rounded = bfloat16Of(bitsOf(0x7fc00000, 0x7f800001, 0xffffffff, 0x7f800000, 0xff800000));
    assert.deepEqual(Array.from(rounded), [0x7fc0, 0x7fc0, 0xffff, 0x7f80, 0xff80]);
  });
});
