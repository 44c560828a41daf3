import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { redisKeys } from '../../queue/queues.js';

const REDIS_TIMEOUT_MS = 1000;

async function liveWorkers(redis: Redis, prefix: string): Promise<unknown[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', redisKeys(prefix).workersPattern, 'COUNT', 100);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  return (await redis.mget(keys)).filter((v): v is string => v !== null).map((v) => JSON.parse(v));
}

export function healthRoutes(app: FastifyInstance, { redis, prefix }: { redis: Redis; prefix: string }): void {
  app.get('/healthz', async () => ({ status: 'ok', uptimeSeconds: Math.round(process.uptime()) }));

  /** Ready when Redis answers; lists the live workers (heartbeats) and the backend each one runs. */
  app.get('/readyz', async (request, reply) => {
    try {
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), REDIS_TIMEOUT_MS));
      await Promise.race([redis.ping(), timeout]);
      const workers = await Promise.race([liveWorkers(redis, prefix), timeout]);
      return { status: 'ready', redis: 'ok', workers };
    } catch (error) {
      return reply
        .code(503)
        .type('application/problem+json')
        .send({
          type: 'about:blank', title: 'Service Unavailable', status: 503, detail: `redis: ${(error as Error).message}`,
          instance: request.url, requestId: request.id,
        });
    }
  });
}
