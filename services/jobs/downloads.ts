import { randomUUID } from 'node:crypto';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';
import { NotFoundError } from '../../common/errors.js';
import { hashFile } from '../../common/file-hash.js';
import type { JobArtifacts, ModelFolder } from '../../common/job-artifacts.js';

export interface Download {
  size: number;
  etag: string;
  filename: string;
  contentType: string;
  open(): NodeJS.ReadableStream;
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

/** The sha256 of a stored file, computed once and kept beside it (the ETag of its downloads). */
async function storedHash(artifacts: JobArtifacts, key: string): Promise<string> {
  const { store } = artifacts;
  const hashKey = `${key}.sha256`;
  if (await store.stat(hashKey)) return (await store.read(hashKey)).toString('utf8');
  const hash = (await hashFile(store.localPath(key))).digest('hex');
  await store.write(hashKey, hash);
  return hash;
}

/** A tar.gz of one model folder, built on first request and kept in the store, so repeated downloads are plain file reads. */
async function archiveOf(artifacts: JobArtifacts, { folder, label }: ModelFolder): Promise<{ key: string; size: number }> {
  const { store } = artifacts;
  const key = artifacts.downloadKey(label, 'tar.gz');
  const existing = await store.stat(key);
  if (existing) return { key, size: existing.size };
  const target = store.localPath(key);
  const staging = `${target}.${randomUUID()}.partial`;
  await mkdir(path.dirname(target), { recursive: true });
  try {
    await tar.c({ gzip: true, portable: true, file: staging, cwd: store.localPath(folder) }, ARCHIVE_FILES);
    await rename(staging, target);
  } finally {
    await rm(staging, { force: true });
  }
  const written = await store.stat(key);
  if (!written) throw new Error(`archive ${key} vanished after it was written`);
  return { key, size: written.size };
}

export async function checkpointDownload(
  artifacts: JobArtifacts,
  selector: CheckpointSelector,
  format: CheckpointFormat,
): Promise<Download> {
  const model = await modelFolder(artifacts, selector);
  const name = `${artifacts.jobId}-${model.label}`;
  if (format === 'safetensors') {
    const key = artifacts.torchvisionWeightsKey(model.folder);
    const stat = await artifacts.store.stat(key);
    if (!stat) throw new NotFoundError('format=safetensors is written for the final model; download this epoch as tar.gz');
    const etag = await storedHash(artifacts, key);
    return {
      size: stat.size,
      etag,
      filename: `${name}.safetensors`,
      contentType: 'application/octet-stream',
      open: () => artifacts.store.createReadStream(key),
    };
  }
  const { key, size } = await archiveOf(artifacts, model);
  const etag = await storedHash(artifacts, key);
  return { size, etag, filename: `${name}.tar.gz`, contentType: 'application/gzip', open: () => artifacts.store.createReadStream(key) };
}
