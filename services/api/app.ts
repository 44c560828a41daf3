import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import underPressure from '@fastify/under-pressure';
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import type { Config } from '../../schemas/config.js';
import { serializerCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { loadManifest } from '../../common/weights-manifest.js';
import { composeApi, requestTimeoutOf, type ApiDeps } from './composition.js';
import { AddressLimiter, adminCheck, authModeOf, guardLocalHosts, guardOwners } from './plugins/auth.js';
import { registerMetrics } from './plugins/metrics.js';
import { registerDashboard } from './plugins/dashboard.js';
import { registerOpenApi } from './plugins/openapi.js';
import { registerQueueAdmin } from './plugins/queue-admin.js';
import { scheduleRetentionSweeps } from './plugins/retention.js';
import { frameworkErrors, registerProblemHandlers, RETRY_AFTER_SECONDS } from './problem.js';
import datasetsRoutes from './routes/datasets/index.js';
import eventRoutes from './routes/events/index.js';
import healthRoutes from './routes/health/index.js';
import modelsRoutes from './routes/models/index.js';
import webhooksRoutes from './routes/webhooks/index.js';
import sweepsRoutes from './routes/sweeps/index.js';
import jobsRoutes from './routes/jobs/index.js';
import predictRoutes from './routes/predict/index.js';
import problemRoutes from './routes/problems/index.js';
import summaryRoutes from './routes/summary/index.js';
import weightsRoutes from './routes/weights/index.js';
import { zodValidatorCompiler } from './validation.js';

/**
 * TRUST_PROXY as Fastify takes it (a hop count trusts that many proxies in front, whatever their
 * address; addresses trust those proxies); unset, none is trusted.
 */
const trustProxyOf = (setting: string | undefined): boolean | string[] | ((address: string, hop: number) => boolean) => {
  if (setting === undefined) return false;
  if (!/^\d+$/.test(setting)) return setting.split(',');
  const hops = Number(setting);
  return (_address, hop) => hop < hops;
};

const API_VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/** Fastify with the service's timeouts, request ids, validation and problem answers. */
function createServer(config: Config, logger: FastifyBaseLogger) {
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: config.BODY_LIMIT_BYTES,
    genReqId: (request) => {
      const supplied = request.headers['x-request-id'];
      return typeof supplied === 'string' && /^[\w.-]{1,128}$/.test(supplied) ? supplied : randomUUID();
    },
    // A silent client cannot hold a connection forever; keep-alive outlives a typical load balancer's 60 s idle timeout.
    connectionTimeout: config.API_IDLE_TIMEOUT_MS,
    keepAliveTimeout: 72_000,
    // Whole requests, uploads included: the largest archive at the slowest rate served; idle sockets go after connectionTimeout.
    requestTimeout: requestTimeoutOf(config),
    return503OnClosing: true,
    frameworkErrors,
    trustProxy: trustProxyOf(config.TRUST_PROXY),
    // Every request at debug (below): at info they would bury the lines that mean something.
    logController: new LogController({ disableRequestLogging: true }),
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(zodValidatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  });
  // JSON only: a text/plain body is a wrong media type (415), not a string spec.
  app.removeContentTypeParser('text/plain');
  registerProblemHandlers(app);
  return app;
}

/** The API as a Fastify instance: no listening; main.ts owns that and the Redis connection (BullMQ's event stream is read on one of its own). */
export async function buildApp({ config, redis, queues, store, logger }: ApiDeps) {
  const authMode = authModeOf(config);
  const app = createServer(config, logger);
  guardLocalHosts(app, authMode, config.ALLOWED_HOSTS);
  const anonymous = new AddressLimiter(redis, config.QUEUE_PREFIX, config.RATE_LIMIT_ANONYMOUS_MAX, config.RATE_LIMIT_WINDOW_MS);
  // Overload answers 503 with Retry-After instead of queueing requests behind a stalled event loop.
  await app.register(underPressure, {
    maxEventLoopDelay: config.API_MAX_EVENT_LOOP_DELAY_MS,
    maxHeapUsedBytes: config.API_MAX_HEAP_USED_BYTES,
    retryAfter: RETRY_AFTER_SECONDS,
  });

  await registerOpenApi(app, authMode, API_VERSION);
  const services = composeApi({ config, redis, queues, store, logger }, await loadManifest(config.WEIGHTS_MANIFEST));
  app.addHook('onClose', () => services.close());
  await services.start(app.log);
  const { jobs, events } = services;
  await registerMetrics(app, { redis, events, queues, prefix: config.QUEUE_PREFIX, mode: authMode, adminKey: config.ADMIN_API_KEY });
  scheduleRetentionSweeps(app, jobs, redis, config.QUEUE_PREFIX, services.evictHostCaches);
  // Everything under /v1 acts for an owner; health probes answer anyone.
  await app.register(
    async (v1) => {
      await guardOwners(v1, authMode, config, redis, anonymous);
      await v1.register(jobsRoutes, { jobs, exporter: services.exporter });
      await v1.register(sweepsRoutes, { sweeps: services.sweeps });
      await v1.register(webhooksRoutes, { webhooks: services.webhooks });
      await v1.register(eventRoutes, { jobs, events, streams: services.eventStreams });
      await v1.register(predictRoutes, { models: services.models, predictions: services.predictions });
      await v1.register(modelsRoutes, { models: services.models, jobs, exporter: services.exporter });
      const { datasets, preflights, uploadSlots, checkUpload } = services;
      await v1.register(datasetsRoutes, { datasets, preflights, uploadSlots, checkUpload });
      await v1.register(summaryRoutes, { inspector: services.inspector, dataDir: config.DATA_DIR, store });
      await v1.register(weightsRoutes, { catalog: services.catalog });
    },
    { prefix: '/v1' },
  );
  await app.register(healthRoutes, {
    redis,
    store,
    queuePrefix: config.QUEUE_PREFIX,
    isAdmin: adminCheck(authMode, config.ADMIN_API_KEY),
    throttle: (request) => anonymous.count(request),
  });
  await app.register(problemRoutes);
  await registerQueueAdmin(app, { queues, mode: authMode, adminKey: config.ADMIN_API_KEY });
  await registerDashboard(app);
  app.log.info({ auth: authMode }, authMode === 'single-user' ? 'single-user mode: no API keys (loopback only)' : 'API keys required');
  return app;
}
