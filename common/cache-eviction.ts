import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { folderBytes, type ArtifactStore } from './artifact-store.js';

export interface CachePolicy {
  maxBytes: number;
  maxAgeMs: number;
}

export const cachePolicyOf = (config: { CACHE_MAX_BYTES: number; CACHE_MAX_AGE_DAYS: number }): CachePolicy => ({
  maxBytes: config.CACHE_MAX_BYTES,
  maxAgeMs: config.CACHE_MAX_AGE_DAYS * 24 * 3600_000,
});

export interface CacheEntry {
  name: string;
  bytes: number;
  /** Last use (its modification time: users touch what they read). */
  usedAt: number;
}

/** An entry used this recently may be in a running job's hands: never evicted. */
export const IN_USE_MS = 24 * 3600_000;

/**
 * What to evict: entries unused for longer than maxAge, then the least recently used until the rest
 * fit in maxBytes; never one used in the last `inUseMs` (a cache that knows its entries' users passes 0).
 */
export function entriesToEvict(entries: readonly CacheEntry[], policy: CachePolicy, now = Date.now(), inUseMs = IN_USE_MS): string[] {
  const evictable = (entry: CacheEntry) => now - entry.usedAt > inUseMs;
  const byAge = [...entries].sort((a, b) => a.usedAt - b.usedAt);
  const evicted = new Set(byAge.filter((entry) => evictable(entry) && now - entry.usedAt > policy.maxAgeMs).map((entry) => entry.name));
  let total = byAge.filter((entry) => !evicted.has(entry.name)).reduce((sum, entry) => sum + entry.bytes, 0);
  for (const entry of byAge) {
    if (total <= policy.maxBytes) break;
    if (evicted.has(entry.name) || !evictable(entry)) continue;
    evicted.add(entry.name);
    total -= entry.bytes;
  }
  return [...evicted];
}

/**
 * A folder cache whose entries are its sub-folders (the synthetic data sets, fetched uploads); a
 * staging folder a killed process left is an entry like any other (unused for a day, it goes).
 */
export async function evictFolderCache(dir: string, policy: CachePolicy, now = Date.now()): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const entries = await Promise.all(
    names.map(async (name) => {
      const usedAt = await stat(path.join(dir, name)).then(
        (s) => s.mtimeMs,
        () => now,
      );
      return { name, usedAt, bytes: await folderBytes(path.join(dir, name)) };
    }),
  );
  const evicted = entriesToEvict(entries, policy, now);
  for (const name of evicted) await rm(path.join(dir, name), { recursive: true, force: true });
  return evicted;
}

/** A cache of files in the artifact store; files that share a stem (`<key>.f32`, `<key>.json`) are one entry. */
export async function evictStoreCache(store: ArtifactStore, prefix: string, policy: CachePolicy, now = Date.now()): Promise<string[]> {
  const stems = new Map<string, { files: string[]; bytes: number; usedAt: number }>();
  for (const file of await store.list(prefix)) {
    const info = await store.stat(`${prefix}/${file}`);
    if (!info) continue;
    const stem = file.replace(/\.[^.]+$/, '');
    const entry = stems.get(stem) ?? { files: [], bytes: 0, usedAt: 0 };
    entry.files.push(file);
    entry.bytes += info.size;
    entry.usedAt = Math.max(entry.usedAt, info.modifiedAt.getTime());
    stems.set(stem, entry);
  }
  const evicted = entriesToEvict(
    [...stems].map(([name, entry]) => ({ name, bytes: entry.bytes, usedAt: entry.usedAt })),
    policy,
    now,
  );
  for (const stem of evicted) for (const file of stems.get(stem)?.files ?? []) await store.remove(`${prefix}/${file}`);
  return evicted;
}

/**
 * Removes the entries of a working folder (uploads arriving, preflights' synthetic sets) that were last
 * modified more than `olderThanMs` ago: what a crashed process left. Newer ones may be another
 * process's work in progress.
 */
export async function removeEntriesOlderThan(dir: string, olderThanMs: number, now = Date.now()): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const entry = path.join(dir, name);
    const modified = await stat(entry).then(
      (s) => s.mtimeMs,
      () => Infinity,
    );
    if (modified >= now - olderThanMs) continue;
    await rm(entry, { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
