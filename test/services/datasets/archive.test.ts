import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as tar from 'tar';
import { ArchiveError, extractArchive, safeEntryPath } from '../../../services/datasets/archive.js';
import { tempDir } from '../../helpers/torch.js';

describe('dataset archives', () => {
  const scratch = tempDir('archive');
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('accepts relative entry names and refuses the ones that escape', () => {
    assert.equal(safeEntryPath('./cats/a.png'), 'cats/a.png');
    assert.equal(safeEntryPath('cats\\b.png'), 'cats/b.png');
    assert.equal(safeEntryPath('cats/'), 'cats');
    for (const [name, reason] of [
      ['../evil', /climbs out/],
      ['cats/../../evil', /climbs out/],
      ['/etc/passwd', /absolute/],
      ['C:/evil', /absolute/],
      ['', /empty/],
      ['a\0b', /NUL/],
    ] as const) {
      assert.throws(
        () => safeEntryPath(name),
        (error: unknown) => error instanceof ArchiveError && reason.test(error.message),
        name,
      );
    }
  });

  async function archiveOf(name: string, files: Record<string, number>): Promise<string> {
    const source = path.join(scratch, `${name}-source`);
    for (const [file, size] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(source, file)), { recursive: true });
      writeFileSync(path.join(source, file), Buffer.alloc(size));
    }
    const archive = path.join(scratch, `${name}.tar.gz`);
    await tar.c({ gzip: true, file: archive, cwd: source }, Object.keys(files));
    return archive;
  }

  it('extracts a tar.gz within its limits, counting files and bytes', async () => {
    const archive = await archiveOf('ok', { 'cats/a.png': 100, 'dogs/b.png': 50 });
    const destination = path.join(scratch, 'ok');
    assert.deepEqual(await extractArchive(archive, 'tar.gz', destination, { maxFiles: 2, maxUnpackedBytes: 150 }), {
      files: 2,
      bytes: 150,
    });
    assert.deepEqual(readdirSync(destination).sort(), ['cats', 'dogs']);
  });

  it('refuses an archive past either limit before writing any of it', async () => {
    const archive = await archiveOf('big', { 'cats/a.png': 100, 'dogs/b.png': 50 });
    for (const [limits, message] of [
      [{ maxFiles: 1, maxUnpackedBytes: 1000 }, /more than 1 files/],
      [{ maxFiles: 10, maxUnpackedBytes: 120 }, /unpacks to more than 120 bytes/],
    ] as const) {
      const destination = path.join(scratch, `refused-${limits.maxFiles}`);
      await assert.rejects(extractArchive(archive, 'tar.gz', destination, limits), message);
      assert.ok(!existsSync(path.join(destination, 'cats')), 'nothing extracted');
    }
  });

  it('refuses bytes that are not the declared format as an archive error', async () => {
    const notGzip = path.join(scratch, 'plain.tar.gz');
    writeFileSync(notGzip, 'just text');
    await assert.rejects(
      extractArchive(notGzip, 'tar.gz', path.join(scratch, 'plain'), { maxFiles: 10, maxUnpackedBytes: 1000 }),
      ArchiveError,
    );
    await assert.rejects(
      extractArchive(notGzip, 'zip', path.join(scratch, 'plain-zip'), { maxFiles: 10, maxUnpackedBytes: 1000 }),
      ArchiveError,
    );
  });
});
