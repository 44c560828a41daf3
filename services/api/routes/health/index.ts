import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ArtifactStore } from '../../../../common/artifact-store.js';
import type { RedisClient } from '../../../../common/redis-connection.js';
import { WorkerRegistry } from '../../../../common/worker-registry.js';
import { WorkerHeartbeat } from '../../../../schemas/queue.js';
import { sendProblem } from '../../problem.js';

/** /readyz answers within this even when Redis or the object store hangs. */
const PROBE_TIMEOUT_MS = 1000;

const Health = z.object({ status: z.literal('ok'), uptimeSeconds: z.number().int() });
const Readiness = z.object({
  status: z.literal('ready'),
  redis: z.literal('ok'),
  artifactStore: z.literal('ok'),
  workerCount: z.number().int().describe('Workers with a live heartbeat'),
  workers: z
    .array(WorkerHeartbeat)
    .optional()
    .describe('Each live worker: host, pid, backend (for the admin key, and in single-user mode)'),
});

function withTimeout<T>(work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

const healthRoutes: FastifyPluginAsyncZod<{
  redis: RedisClient;
  store: ArtifactStore;
  queuePrefix: string;
  /** Whether the request carries the admin's credentials (anyone's, in single-user mode). */
  isAdmin: (authorization: string | undefined) => boolean;
  /** Counts an anonymous request that costs Redis work against its address's limit (429 past it). */
  throttle: (request: FastifyRequest) => Promise<void>;
}> = async (app, { redis, store, queuePrefix, isAdmin, throttle }) => {
  const registry = new WorkerRegistry(redis, queuePrefix);
  // Liveness stays 200 under pressure: an overloaded process is alive, and restarting it would lose its work.
  app.get('/healthz', { schema: { response: { 200: Health } }, config: { pressureHandler: () => undefined } }, async () => ({
    status: 'ok' as const,
    uptimeSeconds: Math.round(process.uptime()),
  }));

  /** Ready when Redis and the artifact store answer; the live workers' count, and to the admin the backend each one runs. */
  app.get('/readyz', { schema: { response: { 200: Readiness } } }, async (request, reply) => {
    const admin = isAdmin(request.headers.authorization);
    if (!admin) await throttle(request);
    // The cause goes to the log; the answer names only the dependency (client errors can carry hosts and paths).
    let workers: WorkerHeartbeat[];
    try {
      await withTimeout(redis.ping());
      workers = await withTimeout(registry.live());
    } catch (error) {
      request.log.warn({ err: error }, 'readyz: redis did not answer');
      return sendProblem(reply, request, 503, 'redis did not answer');
    }
    try {
      await withTimeout(store.ping());
    } catch (error) {
      request.log.warn({ err: error }, 'readyz: the artifact store did not answer');
      return sendProblem(reply, request, 503, 'the artifact store did not answer');
    }
    const ready = { status: 'ready' as const, redis: 'ok' as const, artifactStore: 'ok' as const, workerCount: workers.length };
    return admin ? { ...ready, workers } : ready;
  });
};
export default healthRoutes;
