import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { UPLOAD_CACHE, UPLOADS_FOLDER } from '../schemas/dataset.js';
import type { ArtifactStore } from './artifact-store.js';

/**
 * Uploads on several hosts. Every upload's record is in the artifact store. The API unpacks and
 * checks an upload in its own DATA_DIR; when the artifact store is shared between hosts, it also
 * publishes the checked class folders there as one tar, and another host (a worker, another API
 * process) fetches that into its DATA_DIR/.upload-cache (evicted like any cache).
 */
const archiveKey = (id: string) => `uploads/${id}.tar`;
export const UPLOAD_RECORDS = 'uploads';
export const uploadRecordKey = (id: string) => `${UPLOAD_RECORDS}/${id}.json`;

/** The checked class folders of an upload, as one tar (images are compressed already). */
export async function publishUpload(store: ArtifactStore, id: string, folder: string): Promise<void> {
  const classes = (await readdir(folder, { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
  await store.write(archiveKey(id), tar.c({ cwd: folder, portable: true }, classes));
}

export function unpublishUpload(store: ArtifactStore, id: string): Promise<void> {
  return store.remove(archiveKey(id));
}

const exists = (file: string) =>
  stat(file).then(
    () => true,
    () => false,
  );

/** Where this host holds an upload: where it was received, else the copy fetched from a shared store; null: neither. */
export async function localUploadFolder(dataDir: string, id: string): Promise<{ folder: string; fetched: boolean } | null> {
  const received = path.resolve(dataDir, UPLOADS_FOLDER, id);
  if (await exists(received)) return { folder: received, fetched: false };
  const cached = path.resolve(dataDir, UPLOAD_CACHE, id);
  return (await exists(cached)) ? { folder: cached, fetched: true } : null;
}

/**
 * Makes an upload readable on this host: nothing to do where DATA_DIR holds it (the API's host) or
 * fetched it before; otherwise unpacked from the store's tar into the upload cache. False when the
 * store has no such upload.
 */
export async function fetchUpload(store: ArtifactStore, dataDir: string, id: string): Promise<boolean> {
  const local = await localUploadFolder(dataDir, id);
  if (local) {
    const now = new Date();
    if (local.fetched) await utimes(local.folder, now, now); // used: eviction goes by last use
    return true;
  }
  const cached = path.resolve(dataDir, UPLOAD_CACHE, id);
  if (!(await store.stat(archiveKey(id)))) return false;
  const staging = `${cached}.staging-${randomUUID()}`;
  await mkdir(staging, { recursive: true });
  try {
    // Our own archive of checked files, still unpacked strictly: regular files and folders only.
    await pipeline(
      await store.open(archiveKey(id)),
      tar.x({
        cwd: staging,
        strict: true,
        preservePaths: false,
        filter: (_path, entry) => 'type' in entry && ['File', 'Directory'].includes(entry.type),
      }),
    );
    // Another job on this host may have fetched it meanwhile: either copy is the same.
    await rename(staging, cached).catch(async (error: NodeJS.ErrnoException) => {
      if (!(await exists(cached))) throw error;
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return true;
}
