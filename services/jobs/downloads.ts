import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import * as tar from 'tar';
import type { ArtifactStore } from '../../common/artifact-store.js';
import { hashStream } from '../../common/file-hash.js';
import type { CheckpointSelector, JobArtifacts, ModelFolder } from '../../common/job-artifacts.js';
import type { CheckpointFormat, ExportRequest } from '../../schemas/artifacts.js';
import type { Caller } from '../../schemas/auth.js';
import type { ArchiveCache } from './archive-cache.js';

export interface Download {
  size: number;
  etag: string;
  filename: string;
  contentType: string;
  open(): Promise<Readable>;
}

export type { CheckpointSelector } from '../../common/job-artifacts.js';

/** Converts saved models (it loads them: heavy work, kept off the caller's thread). */
export interface ModelExporter {
  /**
   * Starts converting (if no conversion of that key runs) and returns at once: the download is
   * served once it is in the store. Refuses at once when the caller has its share of the queue.
   */
  begin(request: ExportRequest, caller: Caller): void;
}

/** A download not made yet: the client asks again after this many seconds. */
export interface Converting {
  converting: true;
  retryAfterSeconds: number;
}

/** An ONNX export of a 224 px model takes tens of seconds on 2 cores; a few seconds between asks is enough. */
const CONVERTING_RETRY_AFTER_SECONDS = 5;

const CONTENT_TYPES: Record<CheckpointFormat, string> = {
  'tar.gz': 'application/gzip',
  safetensors: 'application/octet-stream',
  onnx: 'application/octet-stream',
};

/** What a tfjs checkpoint download holds: the layers model and what a client needs to use it. */
const ARCHIVE_FILES = ['model.json', 'weights.bin', 'metadata.json'];

const hashKey = (key: string) => `${key}.sha256`;

/** The sha256 of a stored file, computed once and kept beside it (the ETag of its downloads). */
async function storedHash(store: ArtifactStore, key: string): Promise<string> {
  if (await store.stat(hashKey(key))) return (await store.read(hashKey(key))).toString('utf8');
  const hex = (await hashStream(await store.open(key))).digest('hex');
  await store.write(hashKey(key), hex);
  return hex;
}

const TAR_BLOCK = 512;

/** A ustar archive of stored files, streamed from the store: each file's header, its bytes padded to a block, then two empty blocks. */
async function* tarOf(store: ArtifactStore, folder: string, names: readonly string[]): AsyncGenerator<Buffer> {
  for (const name of names) {
    const key = `${folder}/${name}`;
    const info = await store.stat(key);
    if (!info) throw new Error(`${key} is missing from a complete model`);
    const header = new tar.Header({ path: name, type: 'File', mode: 0o644, size: info.size, mtime: info.modifiedAt });
    header.encode();
    if (!header.block) throw new Error(`no tar header for ${key}`);
    yield header.block;
    let written = 0;
    for await (const chunk of await store.open(key)) {
      written += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
    if (written !== info.size) throw new Error(`${key} changed while it was archived`);
    const padding = (TAR_BLOCK - (info.size % TAR_BLOCK)) % TAR_BLOCK;
    if (padding) yield Buffer.alloc(padding);
  }
  yield Buffer.alloc(2 * TAR_BLOCK);
}

/** A tar.gz of a model folder, streamed from the store into the store (with its sha256): never whole in memory or on local disk. */
async function writeArchive(store: ArtifactStore, folder: string, key: string): Promise<void> {
  const hash = createHash('sha256');
  async function* hashing(chunks: AsyncIterable<Buffer>) {
    for await (const chunk of chunks) {
      hash.update(chunk);
      yield chunk;
    }
  }
  await pipeline(Readable.from(tarOf(store, folder, ARCHIVE_FILES)), createGzip(), (gzipped: AsyncIterable<Buffer>) =>
    store.write(key, hashing(gzipped)),
  );
  await store.write(hashKey(key), hash.digest('hex'));
}

/**
 * A download derived from a model folder, built on first request and kept in the store (repeated
 * downloads are plain reads), its use recorded with the archive cache that bounds them all.
 */
async function cachedDownload(
  artifacts: JobArtifacts,
  model: ModelFolder,
  format: CheckpointFormat,
  { archives, exporter, caller }: { archives: ArchiveCache; exporter: ModelExporter; caller: Caller },
): Promise<{ key: string; size: number } | Converting> {
  const { store, jobId } = artifacts;
  const key = artifacts.downloadKey(model.label, format);
  let stat = await store.stat(key);
  if (!stat && format !== 'tar.gz') {
    exporter.begin({ jobId, model, format, key }, caller);
    return { converting: true, retryAfterSeconds: CONVERTING_RETRY_AFTER_SECONDS };
  }
  if (!stat) {
    await writeArchive(store, model.folder, key);
    stat = await store.stat(key);
    if (!stat) throw new Error(`download ${key} vanished after it was written`);
  }
  await archives.used(key, stat.size);
  return { key, size: stat.size };
}

export async function checkpointDownload(
  artifacts: JobArtifacts,
  selector: CheckpointSelector,
  format: CheckpointFormat,
  derivation: { archives: ArchiveCache; exporter: ModelExporter; caller: Caller },
): Promise<Download | Converting> {
  const model = await artifacts.savedModel(selector);
  const { store, jobId } = artifacts;
  // The safetensors the worker wrote beside the final model is served as it is; everything else is derived and cached.
  const written = artifacts.torchvisionWeightsKey(model.folder);
  const stored = format === 'safetensors' ? await store.stat(written) : null;
  const cached = stored ? { key: written, size: stored.size } : await cachedDownload(artifacts, model, format, derivation);
  if ('converting' in cached) return cached;
  const { key, size } = cached;
  return {
    size,
    etag: await storedHash(store, key),
    filename: `${jobId}-${model.label}.${format}`,
    contentType: CONTENT_TYPES[format],
    open: () => store.open(key),
  };
}
