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
    // Every test of the first two files; of the parity file the logits, not the weight-file round trips
    // (torchvision exports, a float16 import), which test formats, not kernels.
    const kernelTests = "--test-name-pattern=^(the eager ResNet-50|freezing|reproduces PyTorch's logits)";
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
  });
});
