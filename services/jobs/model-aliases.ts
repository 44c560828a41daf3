import type { RedisClient } from '../../common/redis-connection.js';
import { redisKeys } from '../../common/redis-keys.js';
import type { AliasTarget } from '../../schemas/model-alias.js';

/** What the alias hash keeps per name: its target and when it was set. */
export interface AliasRecord extends AliasTarget {
  at: string;
}

const HISTORY_KEPT = 100;

/** Each owner's model aliases in Redis (a hash: name -> target) and each alias's history (a list, newest first). */
export class ModelAliasStore {
  private readonly keys;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
  ) {
    this.keys = redisKeys(prefix);
  }

  /** Points the alias at `target` and records it, in one transaction: a reader sees the old or the new target. */
  async set(owner: string, name: string, target: AliasTarget): Promise<AliasRecord> {
    const record: AliasRecord = { ...target, at: new Date().toISOString() };
    const entry = JSON.stringify(record);
    await this.redis
      .multi()
      .hset(this.keys.modelAliases(owner), name, entry)
      .lpush(this.keys.modelAliasHistory(owner, name), entry)
      .ltrim(this.keys.modelAliasHistory(owner, name), 0, HISTORY_KEPT - 1)
      .exec();
    return record;
  }

  async get(owner: string, name: string): Promise<AliasRecord | null> {
    const entry = await this.redis.hget(this.keys.modelAliases(owner), name);
    return entry ? (JSON.parse(entry) as AliasRecord) : null;
  }

  async history(owner: string, name: string): Promise<AliasRecord[]> {
    return (await this.redis.lrange(this.keys.modelAliasHistory(owner, name), 0, -1)).map((entry) => JSON.parse(entry) as AliasRecord);
  }

  async all(owner: string): Promise<Map<string, AliasRecord>> {
    const entries = await this.redis.hgetall(this.keys.modelAliases(owner));
    return new Map(Object.entries(entries).map(([name, entry]) => [name, JSON.parse(entry) as AliasRecord]));
  }

  count(owner: string): Promise<number> {
    return this.redis.hlen(this.keys.modelAliases(owner));
  }

  async remove(owner: string, name: string): Promise<boolean> {
    const [[, removed]] = (await this.redis
      .multi()
      .hdel(this.keys.modelAliases(owner), name)
      .del(this.keys.modelAliasHistory(owner, name))
      .exec()) as [[unknown, number], unknown];
    return removed === 1;
  }

  /** The owner's aliases that point at the job. */
  async pointingAt(owner: string, jobId: string): Promise<string[]> {
    return [...(await this.all(owner))].filter(([, record]) => record.job === jobId).map(([name]) => name);
  }
}
