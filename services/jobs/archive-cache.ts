import type { ArtifactStore } from '../../common/artifact-store.js';
import { entriesToEvict, type CacheEntry, type CachePolicy } from '../../common/cache-eviction.js';
import { removeStoredFile } from '../../common/job-artifacts.js';
import { redisKeys } from '../../common/redis-keys.js';
import { type RedisClient } from '../../common/redis-connection.js';

/**
 * Download archives are built on first request and kept in the store; this bounds what all of them
 * hold together. Every use is recorded in Redis (shared by every API process). After a new archive is
 * built, and at every retention sweep, those unused for `maxAgeMs` go, then the least recently used
 * until the rest fit in `maxBytes` (a new one stays, even alone past the bound: it is being served).
 * An evicted archive is rebuilt on its next request.
 */
export class ArchiveCache {
  private readonly keys;
  private uses = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly store: ArtifactStore,
    prefix: string,
    private readonly policy: CachePolicy,
  ) {
    this.keys = redisKeys(prefix);
  }

  /**
   * Records a use; an archive new to the cache (just built) makes room for itself. A sequence in the time's fraction orders
   * this process's uses within one millisecond (a cached archive served twice): they tied, and a tie went by name.
   */
  async used(key: string, bytes: number): Promise<void> {
    const usedAt = Date.now() + (this.uses++ % 1000) / 1000;
    const results = await this.redis.multi().zadd(this.keys.archivesUsed, usedAt, key).hset(this.keys.archiveBytes, key, bytes).exec();
    const added = Number(results?.[1]?.[1] ?? 0) > 0;
    if (added) await this.evict(key);
  }

  /** Forgets the archives under a prefix (a job's, when the job is removed with its files). */
  async forget(prefix: string): Promise<void> {
    const keys = (await this.redis.zrange(this.keys.archivesUsed, 0, -1)).filter((key) => key.startsWith(`${prefix}/`));
    if (keys.length > 0)
      await this.redis
        .multi()
        .zrem(this.keys.archivesUsed, ...keys)
        .hdel(this.keys.archiveBytes, ...keys)
        .exec();
  }

  /** Evicts what is too old, then what is past the size bound, least recently used first; returns the keys evicted. */
  async evict(keep?: string, now = Date.now()): Promise<string[]> {
    const sizes = await this.redis.hgetall(this.keys.archiveBytes);
    const used = await this.redis.zrange(this.keys.archivesUsed, 0, -1, 'WITHSCORES');
    const entries: CacheEntry[] = [];
    // The archive being served is never evictable; any other may go the moment it is past the policy.
    for (let i = 0; i < used.length; i += 2) {
      entries.push({ name: used[i], bytes: Number(sizes[used[i]] ?? 0), usedAt: used[i] === keep ? Infinity : Number(used[i + 1]) });
    }
    const evicted = entriesToEvict(entries, this.policy, now, 0);
    for (const key of evicted) {
      await removeStoredFile(this.store, key);
      await this.redis.multi().zrem(this.keys.archivesUsed, key).hdel(this.keys.archiveBytes, key).exec();
    }
    return evicted;
  }
}
