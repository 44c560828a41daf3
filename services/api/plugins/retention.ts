import { redisKeys } from '../../../common/redis-keys.js';
import { type RedisClient } from '../../../common/redis-connection.js';
import type { FastifyInstance } from 'fastify';
import type { JobService } from '../../jobs/job-service.js';

const SWEEP_EVERY_MS = 3600_000;
const FIRST_SWEEP_AFTER_MS = 60_000;

/**
 * Every hour: removes expired jobs (JOB_RETENTION_DAYS after they end), in the one API process that
 * takes the Redis lock; and in every API process, what its own host keeps in caches (`hostSweep`).
 */
export function scheduleRetentionSweeps(
  app: FastifyInstance,
  jobs: JobService,
  redis: RedisClient,
  prefix: string,
  hostSweep: () => Promise<string[]>,
): void {
  const sweep = async () => {
    const evicted = await hostSweep();
    if (evicted.length) app.log.info({ evicted: evicted.length }, "retention: evicted this host's unused cache entries");
    const claimed = await redis.set(redisKeys(prefix).retentionSweepLock, String(process.pid), 'PX', SWEEP_EVERY_MS - 60_000, 'NX');
    if (claimed !== 'OK') return;
    const removed = await jobs.sweepExpired();
    if (removed.length) app.log.info({ removed: removed.length }, 'retention: removed expired jobs and their artifacts');
  };
  const run = () => void sweep().catch((error: Error) => app.log.warn({ err: error.message }, 'retention sweep failed'));
  let timer: NodeJS.Timeout | undefined;
  app.addHook('onReady', async () => {
    timer = setTimeout(function again() {
      run();
      timer = setTimeout(again, SWEEP_EVERY_MS).unref();
    }, FIRST_SWEEP_AFTER_MS).unref();
  });
  app.addHook('onClose', async () => clearTimeout(timer));
}
