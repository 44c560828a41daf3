import { WorkerHeartbeat } from '../schemas/queue.js';
import { redisKeys } from './redis-keys.js';
import { type RedisClient } from './redis-connection.js';

/**
 * The live workers, in two keys of their own: when each one's heartbeat lapses (a sorted set) and its
 * last record (a hash). Reading them costs two commands whatever else Redis holds: no keyspace scan.
 */
export class WorkerRegistry {
  private readonly keys;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
  ) {
    this.keys = redisKeys(prefix);
  }

  /** Renews a worker's entry until `ttlMs` from now, and removes the entries of workers whose heartbeat lapsed. */
  async beat(record: WorkerHeartbeat, ttlMs: number): Promise<void> {
    const now = Date.now();
    const lapsed = await this.redis.zrangebyscore(this.keys.workers, '-inf', now);
    const transaction = this.redis.multi().zadd(this.keys.workers, now + ttlMs, record.workerId);
    transaction.hset(this.keys.workerRecords, record.workerId, JSON.stringify(record));
    if (lapsed.length) transaction.zrem(this.keys.workers, ...lapsed).hdel(this.keys.workerRecords, ...lapsed);
    await transaction.exec();
  }

  async leave(workerId: string): Promise<void> {
    await this.redis.multi().zrem(this.keys.workers, workerId).hdel(this.keys.workerRecords, workerId).exec();
  }

  /** The workers whose heartbeat has not lapsed, and the backend each one runs. */
  async live(): Promise<WorkerHeartbeat[]> {
    const ids = await this.redis.zrangebyscore(this.keys.workers, Date.now(), '+inf');
    if (ids.length === 0) return [];
    return (await this.redis.hmget(this.keys.workerRecords, ...ids)).flatMap((value) => {
      try {
        const heartbeat = WorkerHeartbeat.safeParse(JSON.parse(value ?? 'null'));
        return heartbeat.success ? [heartbeat.data] : [];
      } catch {
        return []; // not JSON: not a record this release writes
      }
    });
  }
}
