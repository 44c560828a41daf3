import { createHash } from 'node:crypto';
import type { RedisClient } from './redis-connection.js';

/** Whose runs a listing reads: everyone's (the admin's listing) or one owner's. */
export type IndexScope = { owner: string } | 'everyone';

/** What a listing may filter by in Redis: each is an index of its own. */
export interface LabelFilter {
  name?: string;
  tag?: string;
  mode?: string;
}

/** A label as it appears in index keys: its kind and a digest of its value (names hold spaces and colons). */
const labelKey = (kind: string, value: string) => `${kind}:${createHash('sha256').update(value).digest('hex').slice(0, 32)}`;

/** The labels a run is indexed by. */
export const labelsOf = ({ mode, name, tags }: { mode?: string; name?: string; tags?: readonly string[] }): string[] => [
  ...(mode ? [labelKey('mode', mode)] : []),
  ...(name ? [labelKey('name', name)] : []),
  ...(tags ?? []).map((tag) => labelKey('tag', tag)),
];

/** How long the intersection of two or more label indexes is kept for the pages of one listing. */
const INTERSECTION_TTL_SECONDS = 30;

/** Where a kind of run keeps its indexes: all of a scope's, and those with a label. */
export interface IndexKeys {
  all(scope: IndexScope): string;
  labelled(scope: IndexScope, label: string): string;
}

/** One index a listing pages through, newest first. */
export class FilteredIndex {
  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
  ) {}

  /** Ids newest first, from position `start` to `stop` (inclusive). */
  page(start: number, stop: number): Promise<string[]> {
    return this.redis.zrevrange(this.key, start, stop);
  }

  count(): Promise<number> {
    return this.redis.zcard(this.key);
  }

  /** Ids a reader found gone. */
  async forget(ids: string[]): Promise<void> {
    if (ids.length) await this.redis.zrem(this.key, ...ids);
  }
}

/**
 * The index a filtered listing pages through: the scope's own, one label's, or the intersection of
 * several (kept a little while, so the pages of one listing agree).
 */
export async function filteredIndex(redis: RedisClient, keys: IndexKeys, scope: IndexScope, filter: LabelFilter): Promise<FilteredIndex> {
  const labels = labelsOf({ ...filter, tags: filter.tag ? [filter.tag] : [] }).map((label) => keys.labelled(scope, label));
  if (labels.length === 0) return new FilteredIndex(redis, keys.all(scope));
  if (labels.length === 1) return new FilteredIndex(redis, labels[0]);
  const digest = createHash('sha256').update(labels.sort().join(' ')).digest('hex').slice(0, 32);
  const key = keys.labelled(scope, `intersection:${digest}`);
  await redis
    .multi()
    .zinterstore(key, labels.length, ...labels, 'AGGREGATE', 'MAX')
    .expire(key, INTERSECTION_TTL_SECONDS)
    .exec();
  return new FilteredIndex(redis, key);
}
