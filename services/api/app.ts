import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import underPressure from '@fastify/under-pressure';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { ArtifactStore } from '../../common/artifact-store.js';
import type { Logger } from '../../common/logger.js';
import type { Queues, RedisClient } from '../../common/queues.js';
import { artifactStoreSettingsOf, type Config } from '../../schemas/config.js';
import { JobService } from '../jobs/job-service.js';
import { ModelInspector } from './model-inspector.js';
import { ThreadModelExporter } from './model-exporter.js';
import { authModeOf, guardOwners, type AuthMode } from './plugins/auth.js';
import { JobEventStream } from './job-events.js';
import { registerMetrics } from './plugins/metrics.js';
import { registerDashboard } from './plugins/dashboard.js';
import { registerOpenApi } from './plugins/openapi.js';
import { registerQueueAdmin } from './plugins/queue-admin.js';
import { scheduleRetentionSweeps } from './plugins/retention.js';
import { frameworkErrors, registerProblemHandlers, RETRY_AFTER_SECONDS } from './problem.js';
import datasetsRoutes, { type UploadLimits } from './routes/datasets/index.js';
import eventRoutes from './routes/events/index.js';
import healthRoutes from './routes/health/index.js';
import jobsRoutes from './routes/jobs/index.js';
import predictRoutes from './routes/predict/index.js';
import summaryRoutes from './routes/summary/index.js';
import type { ThreadSettings } from './thread-protocol.js';
import { zodValidatorCompiler } from './validation.js';

export interface AppDeps {
  config: Config;
  redis: RedisClient;
  queues: Queues;
  store: ArtifactStore;
  logger: Logger;
}

const uploadLimitsOf = (config: Config): UploadLimits => ({
  maxArchiveBytes: config.UPLOAD_LIMIT_BYTES,
  maxFiles: config.UPLOAD_MAX_FILES,
  maxUnpackedBytes: config.UPLOAD_MAX_UNPACKED_BYTES,
  quotaBytes: config.QUOTA_DATASET_BYTES,
  maxConcurrent: config.UPLOAD_MAX_CONCURRENT,
});

const DAY_MS = 24 * 3600 * 1000;
const API_VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

const jobServiceOptionsOf = (config: Config) => ({
  prefix: config.QUEUE_PREFIX,
  dataDir: config.DATA_DIR,
  quotaOpenJobs: config.QUOTA_OPEN_JOBS,
  quotaArtifactBytes: config.QUOTA_ARTIFACT_BYTES,
  downloadCache: { maxBytes: config.DOWNLOAD_CACHE_MAX_BYTES, maxAgeMs: config.CACHE_MAX_AGE_DAYS * DAY_MS },
  maxWaiting: config.QUEUE_MAX_WAITING,
  retentionMs: config.JOB_RETENTION_DAYS * DAY_MS,
  heartbeatMs: config.WORKER_HEARTBEAT_MS,
});

export const requestTimeoutOf = (config: Pick<Config, 'UPLOAD_LIMIT_BYTES' | 'UPLOAD_MIN_BYTES_PER_SECOND'>) =>
  Math.max(120_000, Math.ceil(config.UPLOAD_LIMIT_BYTES / config.UPLOAD_MIN_BYTES_PER_SECOND) * 1000);

/** BullMQ's event stream, read once for the live event streams and the metrics; GET /metrics. */
async function observed(app: FastifyInstance, { config, redis, queues, logger }: Omit<AppDeps, 'store'>, mode: AuthMode) {
  const events = new JobEventStream(config, redis, config.QUEUE_PREFIX, logger);
  app.addHook('onClose', () => events.close());
  await registerMetrics(app, { redis, events, queues, prefix: config.QUEUE_PREFIX, mode, adminKey: config.ADMIN_API_KEY });
  return events;
}

/** What runs on the API's worker threads: summaries and exports here, predictions and preflights in their routes. */
function threadServices(app: FastifyInstance, config: Config) {
  const settings: ThreadSettings = {
    dataDir: config.DATA_DIR,
    artifacts: artifactStoreSettingsOf(config),
    backend: config.TFJS_BACKEND,
    nativeKernels: config.RETRAIN_NATIVE_KERNELS,
  };
  const inspector = new ModelInspector(settings);
  const exporter = new ThreadModelExporter(settings);
  app.addHook('onClose', async () => {
    await inspector.close();
    await exporter.close();
  });
  return { settings, inspector, exporter };
}

/** The API as a Fastify instance: no listening; main.ts owns that and the Redis connection (BullMQ's event stream is read on one of its own). */
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
    // A silent client cannot hold a connection forever; keep-alive outlives a typical load balancer's 60 s idle timeout.
    connectionTimeout: config.API_IDLE_TIMEOUT_MS,
    keepAliveTimeout: 72_000,
    // Whole requests, uploads included: the largest archive at the slowest rate served; idle sockets go after connectionTimeout.
    requestTimeout: requestTimeoutOf(config),
    return503OnClosing: true,
    frameworkErrors,
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

  await registerOpenApi(app, authMode, API_VERSION);
  const events = await observed(app, { config, redis, queues, logger }, authMode);

  const { settings, inspector, exporter } = threadServices(app, config);
  const jobs = new JobService(queues, redis, store, jobServiceOptionsOf(config));
  scheduleRetentionSweeps(app, jobs, redis, config.QUEUE_PREFIX);
  // Everything under /v1 acts for an owner; health probes answer anyone.
  await app.register(
    async (v1) => {
      await guardOwners(v1, authMode, config, redis);
      await v1.register(jobsRoutes, { jobs, exporter });
      await v1.register(eventRoutes, { jobs, events, maxStreams: config.EVENT_STREAMS_MAX });
      await v1.register(predictRoutes, { jobs, settings });
      await v1.register(datasetsRoutes, { jobs, store, settings, limits: uploadLimitsOf(config) });
      await v1.register(summaryRoutes, { inspector, dataDir: config.DATA_DIR, store });
    },
    { prefix: '/v1' },
  );
  await app.register(healthRoutes, { redis, store, queuePrefix: config.QUEUE_PREFIX });
  await registerQueueAdmin(app, { queues, mode: authMode, adminKey: config.ADMIN_API_KEY });
  await registerDashboard(app);
  app.log.info({ auth: authMode }, authMode === 'single-user' ? 'single-user mode: no API keys (loopback only)' : 'API keys required');
  return app;
}
