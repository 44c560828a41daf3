import { randomUUID } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import underPressure from '@fastify/under-pressure';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import { serializerCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Redis } from 'ioredis';
import type { ArtifactStore } from '../../common/artifact-store.js';
import type { Logger } from '../../common/logger.js';
import type { Queues } from '../../common/queues.js';
import type { Config } from '../../schemas/config.js';
import { JobService } from '../jobs/job-service.js';
import { z } from 'zod';
import type { Caller } from '../../schemas/auth.js';
import { ModelInspector } from './model-inspector.js';
import { authenticate, authModeOf } from './plugins/auth.js';
import { HttpProblem, registerProblemHandlers, RETRY_AFTER_SECONDS } from './problem.js';
import datasetsRoutes from './routes/datasets/index.js';
import healthRoutes from './routes/health/index.js';
import jobsRoutes from './routes/jobs/index.js';
import predictRoutes from './routes/predict/index.js';
import summaryRoutes from './routes/summary/index.js';
import type { ThreadSettings } from './thread-protocol.js';
import { zodValidatorCompiler } from './validation.js';

const Me = z.object({
  owner: z.string(),
  admin: z.boolean(),
  auth: z.enum(['api-keys', 'single-user']).describe('single-user: loopback without keys; every request acts as the admin "local"'),
});

export interface AppDeps {
  config: Config;
  redis: Redis;
  queues: Queues;
  store: ArtifactStore;
  logger: Logger;
}

/** The API as a Fastify instance: no listening, no connections of its own; main.ts owns those. */
export async function buildApp({ config, redis, queues, store, logger }: AppDeps) {
  const authMode = authModeOf(config);
  const loggerInstance: FastifyBaseLogger = logger;
  const app = Fastify({
    loggerInstance,
    bodyLimit: config.BODY_LIMIT_BYTES,
    genReqId: (request) => {
      const supplied = request.headers['x-request-id'];
      return typeof supplied === 'string' && /^[\w.-]{1,128}$/.test(supplied) ? supplied : randomUUID();
    },
    // A slow client cannot hold a connection forever; keep-alive outlives a typical load balancer's 60 s idle timeout.
    connectionTimeout: 60_000,
    keepAliveTimeout: 72_000,
    requestTimeout: 120_000,
    return503OnClosing: true,
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(zodValidatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  // JSON only: a text/plain body is a wrong media type (415), not a string spec.
  app.removeContentTypeParser('text/plain');
  registerProblemHandlers(app);
  // Overload answers 503 with Retry-After instead of queueing requests behind a stalled event loop.
  await app.register(underPressure, {
    maxEventLoopDelay: config.API_MAX_EVENT_LOOP_DELAY_MS,
    maxHeapUsedBytes: config.API_MAX_HEAP_USED_BYTES,
    retryAfter: RETRY_AFTER_SECONDS,
  });

  const settings: ThreadSettings = {
    dataDir: config.DATA_DIR,
    artifactsDir: config.ARTIFACTS_DIR,
    backend: config.TFJS_BACKEND,
    nativeKernels: config.RETRAIN_NATIVE_KERNELS,
  };
  const inspector = new ModelInspector(settings);
  app.addHook('onClose', () => inspector.close());
  const jobs = new JobService(queues, redis, store, {
    prefix: config.QUEUE_PREFIX,
    dataDir: config.DATA_DIR,
    quotaOpenJobs: config.QUOTA_OPEN_JOBS,
    maxWaiting: config.QUEUE_MAX_WAITING,
  });
  const limits = {
    maxArchiveBytes: config.UPLOAD_LIMIT_BYTES,
    maxFiles: config.UPLOAD_MAX_FILES,
    maxUnpackedBytes: config.UPLOAD_MAX_UNPACKED_BYTES,
    quotaBytes: config.QUOTA_DATASET_BYTES,
  };
  app.decorateRequest('caller', null as unknown as Caller);
  // Everything under /v1 acts for an owner; health probes answer anyone.
  await app.register(
    async (v1) => {
      authenticate(v1, { mode: authMode, redis, prefix: config.QUEUE_PREFIX, adminKey: config.ADMIN_API_KEY });
      await v1.register(rateLimit, {
        redis,
        nameSpace: `${config.QUEUE_PREFIX}:rate:`,
        max: config.RATE_LIMIT_MAX,
        timeWindow: config.RATE_LIMIT_WINDOW_MS,
        // After authentication: one budget per owner, across every API process (the counters live in Redis).
        keyGenerator: (request) => request.caller.owner,
        allowList: (request) => request.caller.admin,
        errorResponseBuilder: (_request, context) =>
          new HttpProblem(
            429,
            'Too Many Requests',
            `more than ${context.max} requests in ${context.after}; retry after the Retry-After seconds`,
          ),
      });
      v1.get('/me', { schema: { response: { 200: Me } } }, async (request) => ({ ...request.caller, auth: authMode }));
      await v1.register(jobsRoutes, { jobs });
      await v1.register(predictRoutes, { jobs, settings });
      await v1.register(datasetsRoutes, { jobs, settings, limits });
      await v1.register(summaryRoutes, { inspector, dataDir: config.DATA_DIR });
    },
    { prefix: '/v1' },
  );
  await app.register(healthRoutes, { redis, queuePrefix: config.QUEUE_PREFIX });
  app.log.info({ auth: authMode }, authMode === 'single-user' ? 'single-user mode: no API keys (loopback only)' : 'API keys required');
  return app;
}
