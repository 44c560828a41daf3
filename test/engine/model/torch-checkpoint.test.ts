import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { parseSafetensors, toFloat32 } from '../../../engine/model/safetensors.js';
import { readTorchStateDict, TorchCheckpointError } from '../../../engine/model/torch-checkpoint.js';
import { DEBIAN_PYTHON, standInReference, tempDir, torchReference } from '../../helpers/torch.js';

describe("reading torch.save's zip checkpoints without executing them", () => {
  const scratch = tempDir('torch-checkpoint');
  const marker = path.join(scratch, 'the-pickle-ran');
  let standIn: string;
  before(() => {
    standIn = standInReference(['--seed', '6', '--sizes', '64', '--pth']);
    torchReference(['pth', '--out', scratch, '--seed', '3', '--marker', marker]);
  });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('reads a torchvision resnet50 state_dict tensor for tensor as PyTorch wrote it', async () => {
    const fromPth = await readTorchStateDict(readFileSync(path.join(standIn, 'weights.pth')));
    const fromSafetensors = parseSafetensors(readFileSync(path.join(standIn, 'weights.safetensors')));
    assert.equal(fromPth.size, 320, 'every parameter and buffer, num_batches_tracked included');
    assert.deepEqual([...fromPth.keys()], [...fromSafetensors.keys()], 'the same names in the same order');
    for (const [name, tensor] of fromSafetensors) {
      const read = fromPth.get(name)!;
      assert.deepEqual([read.dtype, read.shape], [tensor.dtype, tensor.shape], name);
      assert.ok(Buffer.from(read.bytes).equals(Buffer.from(tensor.bytes)), `${name}: the same bytes`);
    }
  });

  it('gathers strided and offset views, and keeps half and int64 storages as they are', async () => {
    const tensors = await readTorchStateDict(readFileSync(path.join(scratch, 'views.pth')));
    const base = Array.from({ length: 24 }, (_, i) => i);
    const transposed = Array.from({ length: 24 }, (_, i) => base[(i % 4) * 6 + Math.floor(i / 4)]);
    assert.deepEqual([...toFloat32(tensors.get('transposed')!)], transposed);
    assert.deepEqual(tensors.get('transposed')!.shape, [6, 4]);
    assert.deepEqual([...toFloat32(tensors.get('offset')!)], [5, 6, 7, 8, 9, 10]);
    assert.deepEqual([tensors.get('half')!.dtype, [...toFloat32(tensors.get('half')!)].slice(0, 3)], ['F16', [0, 1, 2]]);
    const count = tensors.get('count')!;
    assert.deepEqual(
      [count.dtype, count.shape, new DataView(count.bytes.buffer, count.bytes.byteOffset).getBigInt64(0, true)],
      ['I64', [], 7n],
    );
  });

  it('refuses a pickle that names os.system, naming it, and runs nothing', async () => {
    await assert.rejects(
      readTorchStateDict(readFileSync(path.join(scratch, 'hostile.pth'))),
      (error: Error) => error instanceof TorchCheckpointError && /names the global posix\.system/.test(error.message),
    );
    assert.equal(existsSync(marker), false, 'the command was never run');
    // The same file does run the command when Python unpickles it: the test's file is hostile indeed.
    execFileSync(DEBIAN_PYTHON, ['-c', `import torch; torch.load(${JSON.stringify(path.join(scratch, 'hostile.pth'))})`]);
    assert.equal(existsSync(marker), true);
  });

  it('refuses what is not a torch.save archive', async () => {
    await assert.rejects(readTorchStateDict(readFileSync(path.join(standIn, 'weights.safetensors'))), TorchCheckpointError);
    await assert.rejects(readTorchStateDict(Buffer.from('PK\u0003\u0004 but nothing more')), TorchCheckpointError);
  });
});
