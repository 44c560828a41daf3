import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ArchiveError, extractArchive, MAX_EXPANSION_RATIO, PATH_BOUNDS, type ArchivePlan } from '../../../services/datasets/archive.js';
import { deepPaths, deepTarGz, zipOf } from '../../helpers/hostile-archives.js';
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

  it("refuses the review's deep archive (250 entries, 1000 folders deep) from its listing, before writing anything", async () => {
    const scratch = tempDir('archive-deep');
    try {
      const tarball = path.join(scratch, 'deep.tar.gz');
      writeFileSync(tarball, deepTarGz(250, 1000));
      const zip = path.join(scratch, 'deep.zip');
      zipOf(zip, deepPaths(100, 1000));
      for (const [file, format] of [
        [tarball, 'tar.gz'],
        [zip, 'zip'],
      ] as const) {
        const out = path.join(scratch, `out-${format}`);
        await assert.rejects(
          extractArchive(file, format, out, LIMITS),
          (error: Error) => error instanceof ArchiveError && /is 1002 folders deep; at most 8 are accepted/.test(error.message),
        );
        assert.deepEqual(readdirSync(out), [], `nothing of the ${format} was written`);
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('refuses a path longer than its bound and a name longer than a file system takes', async () => {
    const scratch = tempDir('archive-long');
    try {
      for (const [name, paths] of [
        ['long-path', [`${'d'.repeat(200)}/`.repeat(6) + 'f.png']],
        ['long-name', [`cats/${'n'.repeat(PATH_BOUNDS.segmentBytes + 1)}.png`]],
      ] as const) {
        const zip = path.join(scratch, `${name}.zip`);
        zipOf(zip, [...paths]);
        await assert.rejects(
          extractArchive(zip, 'zip', path.join(scratch, name), LIMITS),
          (error: Error) => error instanceof ArchiveError && /longer than 1024 bytes or a name longer than 255/.test(error.message),
          name,
        );
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('counts the folders that paths imply against the file limit, each once, in tar.gz and zip alike', async () => {
    const scratch = tempDir('archive-implied');
    try {
      // 16 files, each 7 folders deep on a path of its own: 16 files + 16 x 6 folders + 1 shared top = 113 inodes.
      const paths = Array.from({ length: 16 }, (_, n) => `top/${n}/b/c/d/e/f/img.png`);
      const zip = path.join(scratch, 'implied.zip');
      zipOf(zip, paths);
      const tarball = path.join(scratch, 'implied.tar.gz');
      python(
        `import io, json, sys, tarfile
with tarfile.open(sys.argv[1], 'w:gz') as t:
    for name in json.loads(sys.argv[2]):
        info = tarfile.TarInfo(name); info.size = 0; t.addfile(info, io.BytesIO(b''))`,
        tarball,
        JSON.stringify(paths),
      );
      for (const [file, format] of [
        [zip, 'zip'],
        [tarball, 'tar.gz'],
      ] as const) {
        await assert.rejects(
          extractArchive(file, format, path.join(scratch, `refused-${format}`), { ...LIMITS, maxFiles: 112 }),
          (error: Error) => error instanceof ArchiveError && /more than 112 files and folders/.test(error.message),
          format,
        );
        const plans: ArchivePlan[] = [];
        const plan = await extractArchive(file, format, path.join(scratch, `taken-${format}`), { ...LIMITS, maxFiles: 113 }, async (p) => {
          plans.push(p);
        });
        assert.deepEqual(plan, { files: 16, folders: 97, bytes: 0 }, format);
        assert.deepEqual(plans, [plan], 'the plan was shown before extraction');
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('writes nothing when the plan is refused (a quota, say)', async () => {
    const scratch = tempDir('archive-refused-plan');
    try {
      const zip = path.join(scratch, 'cats.zip');
      zipOf(zip, ['cats/a.png', 'dogs/b.png']);
      const out = path.join(scratch, 'out');
      await assert.rejects(
        extractArchive(zip, 'zip', out, LIMITS, async () => {
          throw new Error('over quota');
        }),
        /over quota/,
      );
      assert.deepEqual(readdirSync(out), []);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
