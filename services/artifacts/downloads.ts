import { randomUUID } from 'node:crypto';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';
import { jobKeys, type ArtifactStore } from './artifact-store.js';
import { hashFile } from './file-hash.js';

export interface Download {
  key: string;
  size: number;
  etag: string;
  filename: string;
  contentType: string;
}

/** What a tfjs checkpoint download holds: the layers model and what a client needs to use it. */
const ARCHIVE_FILES = ['model.json', 'weights.bin', 'metadata.json'];

const sha256 = async (file: string) => (await hashFile(file)).digest('hex');

/**
 * A tar.gz of one model folder, built on first request and kept in the store (with its hash for the
 * ETag), so repeated downloads are plain file reads.
 */
async function archiveOf(store: ArtifactStore, folder: string, archiveKey: string): Promise<{ size: number; etag: string }> {
  const hashKey = `${archiveKey}.sha256`;
  const existing = await store.stat(archiveKey);
  if (existing && (await store.stat(hashKey))) {
    return { size: existing.size, etag: (await store.read(hashKey)).toString('utf8') };
  }
  const target = store.localPath(archiveKey);
  const staging = `${target}.${randomUUID()}.partial`;
  await mkdir(path.dirname(target), { recursive: true });
  try {
    await tar.c({ gzip: true, portable: true, file: staging, cwd: store.localPath(folder) }, ARCHIVE_FILES);
    const etag = await sha256(staging);
    await rename(staging, target);
    await store.write(hashKey, etag);
    return { size: (await store.stat(archiveKey))!.size, etag };
  } finally {
    await rm(staging, { force: true });
  }
}

export type CheckpointSelector = { kind: 'final' } | { kind: 'latest' } | { kind: 'best' } | { kind: 'epoch'; epoch: number };

export class NotAvailableError extends Error {}

/** The checkpoint folder a selector names, if it is complete. */
export async function checkpointFolder(store: ArtifactStore, jobId: string, selector: CheckpointSelector) {
  const keys = jobKeys(jobId);
  if (selector.kind === 'final') {
    if (!(await store.stat(`${keys.final}/metadata.json`))) throw new NotAvailableError('the job has no final model yet');
    return { folder: keys.final, label: 'final' };
  }
  if (selector.kind === 'best') {
    const metrics = (await store.stat(keys.metrics)) ? JSON.parse((await store.read(keys.metrics)).toString('utf8')) : null;
    if (!metrics?.bestEpoch) throw new NotAvailableError('the job has no validated epoch yet');
    return checkpointFolder(store, jobId, { kind: 'epoch', epoch: metrics.bestEpoch });
  }
  const complete = [];
  for (const name of await store.list(keys.checkpoints)) {
    if (await store.stat(`${keys.checkpoints}/${name}/state.json`)) complete.push(name);
  }
  const name =
    selector.kind === 'latest'
      ? complete.at(-1)
      : complete.find((n) => Number(n.replace('epoch-', '')) === selector.epoch);
  if (!name) {
    throw new NotAvailableError(selector.kind === 'latest' ? 'the job has no checkpoint yet' : `the job has no checkpoint for epoch ${selector.epoch}`);
  }
  return { folder: `${keys.checkpoints}/${name}`, label: `epoch-${Number(name.replace('epoch-', ''))}` };
}

export async function checkpointDownload(store: ArtifactStore, jobId: string, selector: CheckpointSelector, format: 'tar.gz' | 'safetensors'): Promise<Download> {
  const { folder, label } = await checkpointFolder(store, jobId, selector);
  if (format === 'safetensors') {
    const key = `${folder}/model.safetensors`;
    const stat = await store.stat(key);
    if (!stat) throw new NotAvailableError('format=safetensors is written for the final model; download this epoch as tar.gz');
    const hashKey = `${key}.sha256`;
    let etag = (await store.stat(hashKey)) ? (await store.read(hashKey)).toString('utf8') : '';
    if (!etag) {
      etag = await sha256(store.localPath(key));
      await store.write(hashKey, etag);
    }
    return { key, size: stat.size, etag, filename: `${jobId}-${label}.safetensors`, contentType: 'application/octet-stream' };
  }
  const key = `${jobKeys(jobId).downloads}/${label}.tar.gz`;
  const { size, etag } = await archiveOf(store, folder, key);
  return { key, size, etag, filename: `${jobId}-${label}.tar.gz`, contentType: 'application/gzip' };
}

