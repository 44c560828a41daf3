import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { BackendChoice } from '../../../schemas/model.js';
import { selectBackend } from '../../../engine/backend/backend.js';

describe('backend selection', () => {
  it('picks the first backend that loads, in the order node-gpu, node, wasm, cpu, and reports its version', async () => {
    const chosen = await selectBackend('auto');
    const earlier = BackendChoice.options.slice(0, BackendChoice.options.indexOf(chosen.choice));
    for (const choice of earlier) {
      await assert.rejects(
        selectBackend(choice),
        new RegExp(`no tfjs backend could start \\(${choice}: `),
        `${choice} is preferred, so it must not load here`,
      );
    }
    assert.equal(tf.getBackend(), chosen.backend);
    assert.match(chosen.version, /^\d+\.\d+\.\d+/);
    assert.match(chosen.package, /^@tensorflow\/tfjs-/);
  });

  it('honours an explicit choice and switches to it', async () => {
    const cpu = await selectBackend('cpu');
    assert.equal(cpu.backend, 'cpu');
    assert.equal(tf.getBackend(), 'cpu');
    const wasm = await selectBackend('wasm');
    assert.equal(tf.getBackend(), 'wasm');
    assert.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm'), 'training kernels are registered for wasm');
    assert.equal(wasm.package, '@tensorflow/tfjs-backend-wasm');
  });
});
