import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { z } from 'zod';
import { isDiskFull } from './errors.js';

export type ArtifactData = Uint8Array | string | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/**
 * Files no reader holds (a superseded checkpoint's optimiser state: only a resume reads it, and only the
 * newest) may be removed with `recycle` and written over by a later `recycle` write: writing over a file's
 * blocks is cheaper than allocating new ones (the local store; an object store ignores it).
 */
export interface Recycling {
  recycle?: boolean;
}

/**
 * Where jobs keep their results: checkpoints, summaries, metrics, downloads. Keys are '/'-separated
 * relative paths. A local folder by default; an S3-compatible object store when API and workers run
 * on several hosts.
 */
export interface ArtifactStore {
  /** Other hosts see what it holds (an object store): uploads are published to it for their workers. */
  readonly shared: boolean;
  /** Atomic: readers see the old content or the new, never a partial file. Chunks are written as they come. */
  write(key: string, data: ArtifactData, options?: Recycling): Promise<void>;
  read(key: string): Promise<Buffer>;
  /** null when the key does not exist. */
  stat(key: string): Promise<{ size: number; modifiedAt: Date } | null>;
  /** The bytes of a key as a stream (for downloads: never whole in memory). */
  open(key: string): Promise<Readable>;
  /** Names directly under a prefix (one level, like `ls`). */
  list(prefix: string): Promise<string[]>;
  /** Bytes of a key and of everything under it (0 when absent). */
  usage(prefix: string): Promise<number>;
  /** A key and everything under it. */
  remove(prefix: string, options?: Recycling): Promise<void>;
  /** Rejects when the store cannot be reached (readiness). */
  ping(): Promise<void>;
}

/** Keys are relative, '/'-separated, without '.', '..' or empty segments: none can name something outside the store. */
export function checkedKey(key: string): string {
  const segments = key.split('/');
  if (key.includes('\\') || segments.some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw new Error(`artifact key escapes the store: ${key}`);
  }
  return key;
}

/**
 * Each chunk in one write: writeFile splits an iterable's chunks into 512 KiB writes, each a trip through
 * libuv's pool; a training job's 283 MB checkpoint took 1.1 s that way, between two epochs. Into a spare
 * (`over`), the file is cut to what was written: none of its old bytes remain.
 */
async function writeChunks(file: string, chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, over: boolean): Promise<void> {
  const handle = await open(file, over ? 'r+' : 'w');
  try {
    let position = 0;
    for await (const chunk of chunks) {
      for (let written = 0; written < chunk.byteLength;) {
        const { bytesWritten } = await handle.write(chunk, written, chunk.byteLength - written, position);
        written += bytesWritten;
        position += bytesWritten;
      }
    }
    if (over) await handle.truncate(position);
  } finally {
    await handle.close();
  }
}

/** Files at least this large are kept as spares when removed with `recycle`; smaller ones are not worth it. */
const SPARE_MIN_BYTES = 4 * 1024 * 1024;
const SPARES_MAX = 4;
const SPARE_MAX_AGE_MS = 10 * 60_000;

const isGone = (error: unknown) => ['ENOENT', 'EXDEV'].includes((error as NodeJS.ErrnoException).code ?? '');

/**
 * Large files removed with `recycle` (superseded optimiser states), kept a while for the next `recycle`
 * write to go over: on the VMs this runs on, 264 MB into new blocks took 150-770 ms, over a removed
 * file's 28-34 ms (an experiment writing a checkpoint's files every 3 s). A few at most, minutes at most.
 */
class SpareFiles {
  constructor(private readonly dir: string) {}

  /** Moves a spare to `file` (false: none left; another writer may have taken the last). */
  async claim(file: string): Promise<boolean> {
    for (const spare of await this.current()) {
      try {
        await rename(spare, file);
        return true;
      } catch (error) {
        if (!isGone(error)) throw error;
      }
    }
    return false;
  }

  /** Keeps a removed file as a spare where it is worth it and there is room (false: remove it). */
  async keep(file: string, bytes: number): Promise<boolean> {
    if (bytes < SPARE_MIN_BYTES || (await this.current()).length >= SPARES_MAX) return false;
    await mkdir(this.dir, { recursive: true });
    const spare = path.join(this.dir, randomUUID());
    try {
      await rename(file, spare);
    } catch (error) {
      if (isGone(error)) return false;
      throw error;
    }
    // Its age counts from now: the oldest spares go first.
    const now = new Date();
    await utimes(spare, now, now);
    return true;
  }

  /** The disk is full: spares hold none of it any more. */
  clear(): Promise<void> {
    return rm(this.dir, { recursive: true, force: true });
  }

  /** Spares, newest first; those past their age are removed. */
  private async current(): Promise<string[]> {
    const names = await readdir(this.dir).catch((error: unknown) => {
      if (isGone(error)) return [];
      throw error;
    });
    const spares = await Promise.all(
      names.map(async (name) => {
        const file = path.join(this.dir, name);
        return { file, modified: (await stat(file).catch(() => null))?.mtimeMs ?? 0 };
      }),
    );
    const oldest = Date.now() - SPARE_MAX_AGE_MS;
    await Promise.all(spares.filter((spare) => spare.modified < oldest).map((spare) => rm(spare.file, { force: true })));
    return spares
      .filter((spare) => spare.modified >= oldest)
      .sort((a, b) => b.modified - a.modified)
      .map((spare) => spare.file);
  }
}

export class LocalArtifactStore implements ArtifactStore {
  readonly shared = false;
  readonly root: string;
  private readonly spares: SpareFiles;
  constructor(root: string) {
    this.root = path.resolve(root);
    // No key's first segment starts with a dot: the service's keys are jobs/, weights/, datasets/...
    this.spares = new SpareFiles(path.join(this.root, '.spares'));
  }

  localPath(key: string): string {
    return path.join(this.root, checkedKey(key));
  }

  async write(key: string, data: ArtifactData, { recycle = false }: Recycling = {}): Promise<void> {
    const target = this.localPath(key);
    await mkdir(path.dirname(target), { recursive: true });
    const staging = `${target}.${randomUUID()}.partial`;
    try {
      if (typeof data === 'string') await writeFile(staging, data);
      else await writeChunks(staging, data instanceof Uint8Array ? [data] : data, recycle && (await this.spares.claim(staging)));
      await rename(staging, target);
    } catch (error) {
      await rm(staging, { force: true });
      if (isDiskFull(error)) await this.spares.clear();
      throw error;
    }
  }

  read(key: string): Promise<Buffer> {
    return readFile(this.localPath(key));
  }

  async stat(key: string) {
    try {
      const s = await stat(this.localPath(key));
      return s.isFile() ? { size: s.size, modifiedAt: s.mtime } : null;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  async open(key: string): Promise<Readable> {
    const stream = createReadStream(this.localPath(key));
    // Opened before it is handed over, so a missing key rejects here rather than mid-response.
    await new Promise<void>((resolve, reject) => stream.once('open', () => resolve()).once('error', reject));
    return stream;
  }

  async list(prefix: string): Promise<string[]> {
    try {
      return (await readdir(this.localPath(prefix))).filter((name) => !name.endsWith('.partial')).sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  async usage(prefix: string): Promise<number> {
    const file = await this.stat(prefix);
    return file ? file.size : folderBytes(this.localPath(prefix));
  }

  async remove(prefix: string, { recycle = false }: Recycling = {}): Promise<void> {
    const target = this.localPath(prefix);
    const file = recycle ? await stat(target).catch(() => null) : null;
    if (file?.isFile() && (await this.spares.keep(target, file.size))) return;
    await rm(target, { recursive: true, force: true });
  }

  async ping(): Promise<void> {
    await mkdir(this.root, { recursive: true });
  }
}

/** A JSON artifact parsed with its schema (what was stored is checked, not trusted); null when absent. */
export async function readJson<T extends z.ZodType>(store: ArtifactStore, key: string, schema: T): Promise<z.infer<T> | null> {
  if (!(await store.stat(key))) return null;
  const text = (await store.read(key)).toString('utf8');
  const parsed = schema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`artifact ${key} does not match its schema: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

/** Bytes of the files in a local folder and its sub-folders (0 when absent). */
export async function folderBytes(dir: string): Promise<number> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  const sizes = await Promise.all(
    entries
      .filter((e) => e.isFile())
      .map((e) =>
        stat(path.join(e.parentPath, e.name)).then(
          (s) => s.size,
          () => 0,
        ),
      ),
  );
  return sizes.reduce((a, b) => a + b, 0);
}
