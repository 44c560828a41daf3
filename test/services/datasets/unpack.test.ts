import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ArchiveError } from '../../../services/datasets/archive.js';
import { Unpacker } from '../../../services/datasets/unpack.js';
import { zipOf } from '../../helpers/hostile-archives.js';
import { DEBIAN_PYTHON, tempDir } from '../../helpers/torch.js';

const LIMITS = { maxFiles: 10_000_000, maxUnpackedBytes: 1024 ** 3 };

/** `entries` empty files, each on a path of 7 folders of its own with names of ~140 bytes: a listing that takes memory. */
function wideTarGz(file: string, entries: number): void {
  execFileSync(DEBIAN_PYTHON, [
    '-c',
    `import io, sys, tarfile
with tarfile.open(sys.argv[1], 'w:gz', format=tarfile.PAX_FORMAT) as t:
    for i in range(int(sys.argv[2])):
        name = '/'.join(['%08d' % i + 'x' * 128 + str(k) for k in range(7)]) + '/f.png'
        info = tarfile.TarInfo(name); info.size = 0; t.addfile(info, io.BytesIO(b''))`,
    file,
    String(entries),
  ]);
}

describe('unpacking off the main thread', () => {
  it("unpacks on a thread of its own, and an archive that needs more than the thread's heap costs a refusal, not this process", async () => {
    const scratch = tempDir('unpack');
    const unpacker = new Unpacker(32);
    try {
      const small = path.join(scratch, 'small.zip');
      zipOf(small, ['cats/a.png', 'dogs/b.png']);
      const plan = await unpacker.unpack(
        { file: small, format: 'zip', destination: path.join(scratch, 'small'), limits: LIMITS },
        async () => undefined,
      );
      assert.deepEqual(plan, { files: 2, folders: 2, bytes: 0 }, 'the same small heap unpacks an ordinary archive');
      assert.deepEqual(readdirSync(path.join(scratch, 'small')).sort(), ['cats', 'dogs']);

      const wide = path.join(scratch, 'wide.tar.gz');
      wideTarGz(wide, 60_000);
      const heapBefore = process.memoryUsage().heapUsed;
      let planned = false;
      await assert.rejects(
        unpacker.unpack({ file: wide, format: 'tar.gz', destination: path.join(scratch, 'wide'), limits: LIMITS }, async () => {
          planned = true;
        }),
        (error: Error) => error instanceof ArchiveError && /needs more than 32 MiB of memory/.test(error.message),
      );
      assert.equal(planned, false, 'it ran out while listing: nothing was approved, nothing written');
      assert.ok(process.memoryUsage().heapUsed - heapBefore < 16 * 1024 ** 2, "the listing's memory was the thread's, not this process's");
      const again = await unpacker.unpack(
        { file: small, format: 'zip', destination: path.join(scratch, 'again'), limits: LIMITS },
        async () => undefined,
      );
      assert.equal(again.files, 2, 'the next archive gets a thread of its own');
    } finally {
      await unpacker.close();
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('stops unpacking when closed', async () => {
    const scratch = tempDir('unpack-close');
    const unpacker = new Unpacker();
    try {
      const wide = path.join(scratch, 'wide.tar.gz');
      wideTarGz(wide, 5_000);
      const unpacking = unpacker.unpack({ file: wide, format: 'tar.gz', destination: path.join(scratch, 'out'), limits: LIMITS }, () =>
        unpacker.close(),
      );
      await assert.rejects(unpacking, /stopped/);
    } finally {
      await unpacker.close();
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
