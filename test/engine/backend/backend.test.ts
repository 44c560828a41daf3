import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import * as tf from '../../../engine/tf.js';
import { BackendChoice } from '../../../schemas/model.js';
import { selectBackend } from '../../../engine/backend/backend.js';
import { transparentHugePageMode } from '../../../engine/native/kernels/heap.js';

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

  it('asks Linux for huge pages under the wasm heap where the native kernels load, and gets them unless they are off', () => {
    const mode = transparentHugePageMode();
    // A fresh process each: a 256 MiB tensor written by wasm, then the process's anonymous memory in 2 MiB pages.
    const hugeKiB = (nativeKernels: boolean) => {
      const script = [
        "const { selectBackend } = await import('./engine/backend/backend.ts');",
        "const tf = await import('./engine/tf.ts');",
        `await selectBackend('wasm', { nativeKernels: ${nativeKernels} });`,
        'tf.fill([64 * 1024 * 1024], 1);',
        "const rollup = (await import('node:fs')).readFileSync('/proc/self/smaps_rollup', 'utf8');",
        'console.log(/AnonHugePages:\\s+(\\d+) kB/.exec(rollup)[1]);',
      ].join('\n');
      const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: path.resolve(import.meta.dirname, '../../..'),
        encoding: 'utf8',
      });
      assert.equal(run.status, 0, run.stderr);
      return Number(run.stdout.trim().split('\n').at(-1));
    };
    const [advised, unadvised] = [hugeKiB(true), hugeKiB(false)];
    if (mode === 'never') {
      assert.equal(advised, 0, 'with transparent huge pages off, advice gets none');
      return;
    }
    assert.ok(advised >= 128 * 1024, `the heap's 256 MiB tensor lies mostly in huge pages (${advised} KiB)`);
    // Left to madvise, only the advised heap has them: the advice is what made the difference.
    if (mode === 'madvise') assert.ok(unadvised < 32 * 1024, `without the advice, ${unadvised} KiB in huge pages`);
  });

  it("slices on wasm to the cpu backend's values, runs along the first axis and any others", async () => {
    const shape = [4, 5, 6, 3];
    const values = Float32Array.from({ length: 4 * 5 * 6 * 3 }, (_, i) => i * 0.5 - 7);
    const cases: Array<[number[], number[]]> = [
      [
        [1, 0, 0, 0],
        [2, 5, 6, 3],
      ], // one run of memory: a step's slice of its batch
      [
        [3, 0, 0, 0],
        [-1, -1, -1, -1],
      ],
      [
        [2, 1, 0, 0],
        [1, 3, 6, 3],
      ], // one run inside one image
      [
        [0, 1, 2, 0],
        [4, 2, 3, 2],
      ], // strided: wasm's own kernel
    ];
    const sliced = async (choice: 'cpu' | 'wasm') => {
      await selectBackend(choice);
      return cases.map(([begin, size]) =>
        tf.tidy(() => Array.from(tf.slice(tf.tensor4d(values, shape as [number, number, number, number]), begin, size).dataSync())),
      );
    };
    const expected = await sliced('cpu');
    const actual = await sliced('wasm');
    cases.forEach((_, i) => assert.deepEqual(actual[i], expected[i], `slice ${i}`));
    assert.equal(tf.getBackend(), 'wasm');
    const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 1], 'int32'), 3);
    assert.deepEqual(
      tf.slice(labels, 2, 2).arraySync(),
      [
        [0, 0, 1],
        [0, 1, 0],
      ],
      'int32 rows',
    );
    labels.dispose();
  });
});
