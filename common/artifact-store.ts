import { createReadStream, type ReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { z } from 'zod';

/**
 * Where jobs keep their results: checkpoints, summaries, metrics, downloads. Keys are '/'-separated
 * relative paths. Local filesystem here; an S3-compatible store implements the same interface when
 * workers run on several hosts.
 */
export interface ArtifactStore {
  /** Atomic: readers see the old content or the new, never a partial file. Chunks are written as they come. */
  write(key: string, data: Uint8Array | string | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void>;
  read(key: string): Promise<Buffer>;
  /** null when the key does not exist. */
  stat(key: string): Promise<{ size: number; modifiedAt: Date } | null>;
  createReadStream(key: string): ReadStream;
  /** Keys directly under a prefix (one level, like `ls`). */
  list(prefix: string): Promise<string[]>;
  remove(prefix: string): Promise<void>;
  /** A local path for tools that need one (tar); local store only. */
  localPath(key: string): string;
}

export class LocalArtifactStore implements ArtifactStore {
  readonly root: string;
  constructor(root: string) {
    this.root = path.resolve(root);
  }

  localPath(key: string): string {
    const resolved = path.resolve(this.root, key);
    if (resolved !== this.root && !resolved.startsWith(this.root + path.sep)) throw new Error(`artifact key escapes the store: ${key}`);
    return resolved;
  }

  async write(key: string, data: Uint8Array | string | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
    const target = this.localPath(key);
    await mkdir(path.dirname(target), { recursive: true });
    const staging = `${target}.${randomUUID()}.partial`;
    try {
      await writeFile(staging, data);
      await rename(staging, target);
    } catch (error) {
      await rm(staging, { force: true });
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

  createReadStream(key: string): ReadStream {
    return createReadStream(this.localPath(key));
  }

  async list(prefix: string): Promise<string[]> {
    try {
      return (await readdir(this.localPath(prefix))).filter((name) => !name.endsWith('.partial')).sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  remove(prefix: string): Promise<void> {
    return rm(this.localPath(prefix), { recursive: true, force: true });
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
