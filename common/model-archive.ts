import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import * as tar from 'tar';
import type { JobArtifacts, StoredFile } from './job-artifacts.js';

const TAR_BLOCK = 512;

/** A ustar archive of stored files, streamed from the store: each file's header, its bytes padded to a block, then two empty blocks. */
async function* tarOf(files: Array<{ name: string; file: StoredFile }>): AsyncGenerator<Buffer> {
  for (const { name, file } of files) {
    const info = await file.stat();
    if (!info) throw new Error(`${file.key} is missing from a complete model`);
    const header = new tar.Header({ path: name, type: 'File', mode: 0o644, size: info.size, mtime: info.modifiedAt });
    header.encode();
    if (!header.block) throw new Error(`no tar header for ${file.key}`);
    yield header.block;
    let written = 0;
    for await (const chunk of await file.open()) {
      written += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
    if (written !== info.size) throw new Error(`${file.key} changed while it was archived`);
    const padding = (TAR_BLOCK - (info.size % TAR_BLOCK)) % TAR_BLOCK;
    if (padding) yield Buffer.alloc(padding);
  }
  yield Buffer.alloc(2 * TAR_BLOCK);
}

/** A tar.gz of a model's files, streamed from the store into the store (with its sha256): never whole in memory or on local disk. */
export async function writeArchive(artifacts: JobArtifacts, folder: string, archive: StoredFile): Promise<void> {
  await pipeline(Readable.from(tarOf(artifacts.modelFiles(folder))), createGzip(), (gzipped: AsyncIterable<Buffer>) =>
    archive.writeHashed(gzipped),
  );
}
