import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ArchiveError, extractArchive, MAX_EXPANSION_RATIO } from '../../../services/datasets/archive.js';
import { DEBIAN_PYTHON, tempDir } from '../../helpers/torch.js';

/** Python's tarfile and zipfile, which write what they are told (folders, sizes) without a fuss. */
function python(program: string, ...args: string[]): void {
  execFileSync(DEBIAN_PYTHON, ['-c', program, ...args]);
}

const LIMITS = { maxFiles: 500, maxUnpackedBytes: 1024 ** 3 };

describe('archive extraction bounds', () => {
  it('counts folders against the file limit', async () => {
    const scratch = tempDir('archive-folders');
    try {
      const archive = path.join(scratch, 'folders.tar.gz');
      python(
        `import sys, tarfile
with tarfile.open(sys.argv[1], 'w:gz') as t:
    for i in range(501):
        info = tarfile.TarInfo(f'cats/{i}'); info.type = tarfile.DIRTYPE; t.addfile(info)`,
        archive,
      );
      await assert.rejects(
        extractArchive(archive, 'tar.gz', path.join(scratch, 'out'), LIMITS),
        (error: Error) => error instanceof ArchiveError && /more than 500 files and folders/.test(error.message),
      );
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it(`refuses an archive that would expand more than ${MAX_EXPANSION_RATIO}x, before writing it`, async () => {
    const scratch = tempDir('archive-ratio');
    try {
      const archive = path.join(scratch, 'bomb.tar.gz');
      python(
        `import io, sys, tarfile
with tarfile.open(sys.argv[1], 'w:gz') as t:
    data = bytes(200 * 1024 * 1024)
    info = tarfile.TarInfo('cats/zeros.png'); info.size = len(data); t.addfile(info, io.BytesIO(data))`,
        archive,
      );
      const out = path.join(scratch, 'out');
      await assert.rejects(
        extractArchive(archive, 'tar.gz', out, LIMITS),
        (error: Error) => error instanceof ArchiveError && /100x the archive/.test(error.message),
      );
      assert.deepEqual(readdirSync(out), [], 'nothing was written');
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('refuses a zip entry whose bytes fail its CRC-32', async () => {
    const scratch = tempDir('archive-crc');
    try {
      const archive = path.join(scratch, 'damaged.zip');
      python(
        `import sys, zipfile
with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_STORED) as z:
    z.writestr('cats/a.png', b'not really a png, but bytes all the same')`,
        archive,
      );
      const bytes = readFileSync(archive);
      const flip = bytes.indexOf('not really'); // stored, so the content sits in the file as is
      bytes[flip] ^= 0xff;
      writeFileSync(archive, bytes);
      await assert.rejects(
        extractArchive(archive, 'zip', path.join(scratch, 'out'), LIMITS),
        (error: Error) => error instanceof ArchiveError && /fails its CRC-32 check/.test(error.message),
      );
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
