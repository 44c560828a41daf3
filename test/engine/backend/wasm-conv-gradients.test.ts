import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../../../engine/tf.js';
import { selectBackend } from '../../../engine/backend/backend.js';
import { caseData, convResults, relativeError, resnetConvCases, torchConvResults } from '../../helpers/conv-cases.js';

describe('wasm convolution gradients', () => {
  it('match PyTorch over every conv shape ResNet-50 has', async () => {
    await selectBackend('wasm', { nativeKernels: false });
    const cases = resnetConvCases();
    const geometries = new Set(cases.map((c) => `${c.kernel}x${c.kernel}/${c.stride} ${c.padding}`));
    assert.deepEqual([...geometries].sort(), ['1x1/1 valid', '1x1/2 valid', '3x3/1 same', '3x3/2 valid', '7x7/2 valid']);
    const data = cases.map((c, i) => caseData(c, i));
    const reference = torchConvResults(cases, data);
    assert.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm'), 'wasm has a filter-gradient kernel once selected');
    const before = tf.engine().backend.numDataIds();
    const ours = cases.map((c, i) => convResults(c, data[i]));
    assert.equal(tf.engine().backend.numDataIds(), before, 'the kernels free their intermediates');
    cases.forEach((c, i) => {
      const label = `${c.kernel}x${c.kernel}/${c.stride} ${c.padding} on [${c.input}] -> ${c.filters}`;
      assert.ok(relativeError(ours[i].dFilter, reference[i].dFilter) <= 1e-4, `filter gradient ${label}`);
      assert.ok(relativeError(ours[i].dx, reference[i].dx) <= 1e-4, `input gradient ${label}`);
    });
  });
});
