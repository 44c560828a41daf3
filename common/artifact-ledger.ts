import { redisKeys } from './redis-keys.js';
import { hashTotal, scanKeys, type RedisClient } from './redis-connection.js';

/**
 * Sets (or, with an empty value, removes) one job's bytes in its owner's hash and moves the running
 * total across owners by the difference, in one step. Without a total (data of a release before it, not yet
 * added up; or a Redis that lost its data) the owner is listed for the sum that starts it instead: a delta
 * alone would start a total that misses every earlier job. KEYS[1] owner's hash, KEYS[2] total, KEYS[3] the
 * owners not yet summed; ARGV job, bytes.
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
if redis.call('EXISTS', KEYS[2]) == 1 then return redis.call('INCRBY', KEYS[2], after - before) end
redis.call('SADD', KEYS[3], KEYS[1])
return 0
`;

/**
 * Starts the total, unless one exists: the sum of the owners' hashes found by a scan (KEYS[3..]) and of those
 * listed since (KEYS[2], as RECORD lists them), in one step, so no record falls between the sum and the total.
 * INCRBY keeps the sum in integers. KEYS[1] total.
 */
const ADD_UP = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local owners = {}
for i = 3, #KEYS do owners[KEYS[i]] = true end
for _, key in ipairs(redis.call('SMEMBERS', KEYS[2])) do owners[key] = true end
redis.call('SET', KEYS[1], 0)
for key in pairs(owners) do
  for _, bytes in ipairs(redis.call('HVALS', key)) do redis.call('INCRBY', KEYS[1], bytes) end
end
redis.call('DEL', KEYS[2])
return 1
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
    await this.set(owner, jobId, String(bytes));
  }

  async forget(owner: string, jobId: string): Promise<void> {
    await this.set(owner, jobId, '');
  }

  private async set(owner: string, jobId: string, bytes: string): Promise<void> {
    const { artifactBytesTotal, artifactBytesUnsummed } = this.keys;
    await this.redis.eval(RECORD, 3, this.keys.artifactBytes(owner), artifactBytesTotal, artifactBytesUnsummed, jobId, bytes);
  }

  /** What the owner's jobs keep: every job's last measure. */
  ownerTotal(owner: string): Promise<number> {
    return hashTotal(this.redis, this.keys.artifactBytes(owner));
  }

  /** What one job keeps, as last measured (0 before its first measure). */
  async jobBytes(owner: string, jobId: string): Promise<number> {
    return Number((await this.redis.hget(this.keys.artifactBytes(owner), jobId)) ?? 0);
  }

  /** What every owner's jobs keep; before the total is started, what the owners recorded since keep (no scan). */
  async total(): Promise<number> {
    const total = await this.redis.get(this.keys.artifactBytesTotal);
    if (total !== null) return Number(total);
    return hashTotal(this.redis, ...(await this.redis.smembers(this.keys.artifactBytesUnsummed)));
  }

  /**
   * Releases before the running total kept only the owners' hashes: sums them once (the one scan of
   * the keyspace, at an API's start, off every request's path), unless a total exists already.
   */
  async addUpTotalOnce(): Promise<boolean> {
    const { artifactBytesTotal, artifactBytesUnsummed } = this.keys;
    if (await this.redis.exists(artifactBytesTotal)) return false;
    const owners = await scanKeys(this.redis, this.keys.artifactBytes('*'));
    return (await this.redis.eval(ADD_UP, 2 + owners.length, artifactBytesTotal, artifactBytesUnsummed, ...owners)) === 1;
  }
}
