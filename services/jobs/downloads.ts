import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import * as tar from 'tar';
import type { ArtifactStore } from '../../common/artifact-store.js';
import { NotFoundError } from '../../common/errors.js';
import { hashStream } from '../../common/file-hash.js';
import type { JobArtifacts, ModelFolder } from '../../common/job-artifacts.js';
import type { ArchiveCache } from './archive-cache.js';

export interface Download {
  size: number;
  etag: string;
  filename: string;
  contentType: string;
  open(): Promise<Readable>;
}

export type CheckpointSelector = { kind: 'final' } | { kind: 'latest' } | { kind: 'best' } | { kind: 'epoch'; epoch: number };
export type CheckpointFormat = 'tar.gz' | 'safetensors';

/** What a tfjs checkpoint download holds: the layers model and what a client needs to use it. */
const ARCHIVE_FILES = ['model.json', 'weights.bin', 'metadata.json'];

/** The complete saved model a selector names. */
export async function modelFolder(artifacts: JobArtifacts, selector: CheckpointSelector): Promise<ModelFolder> {
  if (selector.kind === 'final') {
    if (!(await artifacts.hasFinalModel())) throw new NotFoundError('the job has no final model yet');
    return artifacts.final;
  }
  if (selector.kind === 'best') {
    const bestEpoch = (await artifacts.readMetrics())?.bestEpoch;
    if (!bestEpoch) throw new NotFoundError('the job has no validated epoch yet');
    return modelFolder(artifacts, { kind: 'epoch', epoch: bestEpoch });
  }
  const complete = await artifacts.completeCheckpoints();
  const epoch = selector.kind === 'latest' ? complete.at(-1) : complete.find((e) => e === selector.epoch);
  if (epoch === undefined) {
    throw new NotFoundError(
      selector.kind === 'latest' ? 'the job has no checkpoint yet' : `the job has no checkpoint for epoch ${selector.epoch}`,
    );
  }
  return artifacts.epochFolder(epoch);
}

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

/**
 * A tar.gz of one model folder, built on first request and kept in the store (with its sha256), so
 * repeated downloads are plain reads. Streamed end to end: the model is never whole in memory or on local disk.
 */
async function archiveOf(artifacts: JobArtifacts, { folder, label }: ModelFolder): Promise<{ key: string; size: number; built: boolean }> {
  const { store } = artifacts;
  const key = artifacts.downloadKey(label, 'tar.gz');
  const existing = await store.stat(key);
  if (existing) return { key, size: existing.size, built: false };
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
  const written = await store.stat(key);
  if (!written) throw new Error(`archive ${key} vanished after it was written`);
  return { key, size: written.size, built: true };
}

export async function checkpointDownload(
  artifacts: JobArtifacts,
  selector: CheckpointSelector,
  format: CheckpointFormat,
  archives: ArchiveCache,
): Promise<Download> {
  const model = await modelFolder(artifacts, selector);
  const name = `${artifacts.jobId}-${model.label}`;
  if (format === 'safetensors') {
    const key = artifacts.torchvisionWeightsKey(model.folder);
    const stat = await artifacts.store.stat(key);
    if (!stat) throw new NotFoundError('format=safetensors is written for the final model; download this epoch as tar.gz');
    const etag = await storedHash(artifacts.store, key);
    return {
      size: stat.size,
      etag,
      filename: `${name}.safetensors`,
      contentType: 'application/octet-stream',
      open: () => artifacts.store.open(key),
    };
  }
  const { key, size, built } = await archiveOf(artifacts, model);
  const etag = await storedHash(artifacts.store, key);
  await archives.used(key, size, built);
  return { size, etag, filename: `${name}.tar.gz`, contentType: 'application/gzip', open: () => artifacts.store.open(key) };
}
