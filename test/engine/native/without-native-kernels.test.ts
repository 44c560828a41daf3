import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../../..');

describe('the model without the native kernels (RETRAIN_NATIVE_KERNELS=0)', () => {
  it('still matches PyTorch and still keeps frozen BatchNorm frozen, eager and layers alike, on the wasm kernels', () => {
    // The same tests run with the native kernels in the main pass; here once more on wasm's own.
    const files = [
      'test/engine/model/torch-parity.test.ts',
      'test/engine/model/freezing.test.ts',
      'test/engine/model/eager-resnet.test.ts',
    ];
    // The tests whose numbers come from the kernels: freezing, PyTorch's logits, and the eager network against the
    // layers model. Not the weight-file round trips (formats), nor the eager network's bookkeeping (which stages
    // run, folding again, disposal): the same code on either kernels, tested in the main pass.
    const kernelTests =
      "--test-name-pattern=^(freezing|reproduces PyTorch's logits|.*: equals the layers model forward and in every gradient, under tfjs' tape and by its own$)";
    // Without NODE_TEST_CONTEXT: this runner's own, which would turn the child's report into its protocol.
    const { NODE_TEST_CONTEXT: _context, ...env } = process.env;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--test', kernelTests, '--test-reporter=tap', ...files], {
      cwd: ROOT,
      env: { ...env, RETRAIN_NATIVE_KERNELS: '0' },
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stdout.slice(-4000));
    assert.match(run.stdout, /^# fail 0$/m);
    assert.doesNotMatch(run.stdout, /^# pass 0$/m);
    assert.match(run.stdout, /^\s*ok \d+ - reproduces PyTorch's logits and top-5 at input 224$/m, 'the kernel tests ran');
    assert.match(
      run.stdout,
      /^\s*ok \d+ - fine_tuning from conv1, BatchNorm trained: equals the layers model forward and in every gradient, under tfjs' tape and by its own$/m,
    );
  });
});
