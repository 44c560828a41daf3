import { redisKeys } from './redis-keys.js';
import { hashTotal, scanKeys, type RedisClient } from './redis-connection.js';

/**
 * Sets (or, with an empty value, removes) one job's bytes in its owner's hash and moves the running
 * total across owners by the difference, in one step. KEYS[1] owner's hash, KEYS[2] total; ARGV job, bytes.
 */
const RECORD = `
local before = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local after = 0
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  after = tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return redis.call('INCRBY', KEYS[2], after - before)
`;

/**
 * The bytes of models and checkpoints each job keeps, as its worker last measured them: per owner
 * (a hash: job id -> bytes; the artifact quota reads it) and in all (a counter kept with every change,
 * so the metrics never scan the keyspace for it).
 */
export class ArtifactLedger {
  private readonly keys;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
  ) {
    this.keys = redisKeys(prefix);
  }

  async record(owner: string, jobId: string, bytes: number): Promise<void> {
    await this.redis.eval(RECORD, 2, this.keys.artifactBytes(owner), this.keys.artifactBytesTotal, jobId, String(bytes));
  }

  async forget(owner: string, jobId: string): Promise<void> {
    await this.redis.eval(RECORD, 2, this.keys.artifactBytes(owner), this.keys.artifactBytesTotal, jobId, '');
  }

  /** What the owner's jobs keep: every job's last measure. */
  ownerTotal(owner: string): Promise<number> {
    return hashTotal(this.redis, this.keys.artifactBytes(owner));
  }

  /** What one job keeps, as last measured (0 before its first measure). */
  async jobBytes(owner: string, jobId: string): Promise<number> {
    return Number((await this.redis.hget(this.keys.artifactBytes(owner), jobId)) ?? 0);
  }

  /** What every owner's jobs keep. */
  async total(): Promise<number> {
    return Number((await this.redis.get(this.keys.artifactBytesTotal)) ?? 0);
  }

  /**
   * Releases before the running total kept only the owners' hashes: sums them once (the one scan of
   * the keyspace, at an API's start, off every request's path), unless a total exists already.
   */
  async addUpTotalOnce(): Promise<boolean> {
    if (await this.redis.exists(this.keys.artifactBytesTotal)) return false;
    const owners = await scanKeys(this.redis, this.keys.artifactBytes('*'));
    return (await this.redis.set(this.keys.artifactBytesTotal, await hashTotal(this.redis, ...owners), 'NX')) === 'OK';
  }
}
