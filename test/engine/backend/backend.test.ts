import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import * as tf from '../../../engine/tf.js';
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
    assert.deepEqual([cpu.backend, cpu.kernels], ['cpu', 'cpu']);
    assert.equal(tf.getBackend(), 'cpu');
    const wasm = await selectBackend('wasm');
    assert.equal(tf.getBackend(), 'wasm');
    assert.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm'), 'training kernels are registered for wasm');
    assert.equal(wasm.package, '@tensorflow/tfjs-backend-wasm');
    assert.match(wasm.kernels, /^onednn \d+\.\d+\.\d+$/, 'the addon built by npm ci runs the convolutions');
    assert.equal(wasm.nativeKernelsMissing, undefined);
  });

  it('says why wasm runs its own kernels when the addon is turned off', () => {
    const run = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        "import('./engine/backend/backend.ts').then(async (m) => console.log(JSON.stringify(await m.selectBackend('wasm', { nativeKernels: false }))))",
      ],
      {
        cwd: path.resolve(import.meta.dirname, '../../..'),
        encoding: 'utf8',
      },
    );
    const info = JSON.parse(run.stdout) as { kernels: string; nativeKernelsMissing: string };
    assert.deepEqual([info.kernels, info.nativeKernelsMissing], ['wasm', 'turned off (RETRAIN_NATIVE_KERNELS=0)']);
  });
});
