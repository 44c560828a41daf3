import { randomUUID } from 'node:crypto';
import multipart from '@fastify/multipart';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Config } from '../../schemas/config.js';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import { JobService } from '../jobs/job-service.js';
import type { Queues } from '../queue/queues.js';
import { ModelInspector } from './model-inspector.js';
import { registerProblemHandlers } from './problem.js';
import { datasetsRoutes } from './routes/datasets.routes.js';
import { healthRoutes } from './routes/health.routes.js';
import { PREDICT_LIMITS, predictRoutes } from './routes/predict.routes.js';
import { jobsRoutes } from './routes/jobs.routes.js';
import { summaryRoutes } from './routes/summary.routes.js';

export interface AppDeps {
  config: Config;
  redis: Redis;
  queues: Queues;
  store: ArtifactStore;
  logger?: boolean;
}

/** The API as a Fastify instance: no listening, no connections of its own; main.ts owns those. */
export function buildApp({ config, redis, queues, store, logger = true }: AppDeps): FastifyInstance {
  const app = Fastify({
    logger: logger ? { level: config.LOG_LEVEL } : false,
    bodyLimit: config.BODY_LIMIT_BYTES,
    genReqId: (request) => {
      const supplied = request.headers['x-request-id'];
      return typeof supplied === 'string' && /^[\w.-]{1,128}$/.test(supplied) ? supplied : randomUUID();
    },
    // Explicit timeouts: a slow client cannot hold a connection forever.
    connectionTimeout: 60_000,
    keepAliveTimeout: 72_000,
    requestTimeout: 120_000,
    return503OnClosing: true,
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  // JSON only: a text/plain body is a wrong media type (415), not a string spec.
  app.removeContentTypeParser('text/plain');
  registerProblemHandlers(app);
  const inspector = new ModelInspector();
  app.addHook('onClose', async () => inspector.close());
  void app.register(multipart, { limits: PREDICT_LIMITS, throwFileSizeLimit: true });
  const jobs = new JobService(queues, redis, store, config);
  jobsRoutes(app, { jobs, store });
  predictRoutes(app, { jobs, config });
  datasetsRoutes(app, { config });
  summaryRoutes(app, { inspector, config });
  healthRoutes(app, { redis, prefix: config.QUEUE_PREFIX });
  return app;
}
