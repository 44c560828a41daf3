import { redisKeys, scanKeys, type RedisClient } from '../../common/queues.js';
import { WorkerHeartbeat } from '../../schemas/queue.js';

/** The workers whose heartbeat has not lapsed, and the backend each one runs. */
export async function liveWorkers(redis: RedisClient, prefix: string): Promise<WorkerHeartbeat[]> {
  const keys = await scanKeys(redis, redisKeys(prefix).workersPattern);
  if (keys.length === 0) return [];
  return (await redis.mget(keys)).flatMap((value) => {
    try {
      const heartbeat = WorkerHeartbeat.safeParse(JSON.parse(value ?? 'null'));
      return heartbeat.success ? [heartbeat.data] : [];
    } catch {
      return []; // not JSON: not a heartbeat this release writes
    }
  });
}
