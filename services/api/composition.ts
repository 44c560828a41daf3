// The API's composition root: every service, thread pool and start-up task, built once from the
// config and handed to the route plugins, which only translate HTTP.
import type { FastifyBaseLogger } from 'fastify';
import path from 'node:path';
import { ArtifactLedger } from '../../common/artifact-ledger.js';
import { cachePolicyOf, evictFolderCache } from '../../common/cache-eviction.js';
import type { ArtifactStore } from '../../common/artifact-store.js';
import type { Logger } from '../../common/logger.js';
import { QueueName, type Queues } from '../../common/queue-facade.js';
import { redisConnection, whenReady, type RedisClient } from '../../common/redis-connection.js';
import { SharedCapacity } from '../../common/shared-capacity.js';
import { WeightsCatalog } from '../../common/weights-catalog.js';
import { WeightsStore } from '../../common/weights-store.js';
import type { WeightsManifest } from '../../schemas/weights.js';
import type { Caller } from '../../schemas/auth.js';
import { artifactStoreSettingsOf, type Config } from '../../schemas/config.js';
import { PreflightOptions, SYNTHETIC_CACHE, UPLOAD_CACHE, type PreflightReport } from '../../schemas/dataset.js';
import { DatasetStore, type UploadLimits } from '../datasets/dataset-store.js';
import { Preflights } from '../datasets/preflights.js';
import { UNPACK_TIMEOUT_MS } from '../datasets/unpack.js';
import { JobService } from '../jobs/job-service.js';
import { WebhookService } from '../webhooks/webhook-service.js';
import { ADMIN_OWNER } from '../../schemas/auth.js';
import type { JobState } from '../../schemas/job-status.js';
import type { WebhookEventType } from '../../schemas/webhook.js';
import { ModelService } from '../jobs/model-service.js';
import { SweepService } from '../sweeps/sweep-service.js';
import { JobEventStream } from './job-events.js';
import { ThreadModelExporter } from './model-exporter.js';
import { ModelInspector } from './model-inspector.js';
import type { PredictOutcome, PredictRequest, PreflightRequest, ThreadSettings } from './thread-protocol.js';
import { ThreadRpc } from './thread-rpc.js';

export interface ApiDeps {
  config: Config;
  redis: RedisClient;
  queues: Queues;
  store: ArtifactStore;
  logger: Logger;
}

const DAY_MS = 24 * 3600 * 1000;
/** How long start-up tasks that need Redis (adding up kept bytes, indexing uploads) wait for it. */
const START_UP_REDIS_WAIT_MS = 10 * 60 * 1000;

/** How long a request may take, uploads included: the largest archive at the slowest rate served (and at least two minutes). */
export const requestTimeoutOf = (config: Pick<Config, 'UPLOAD_LIMIT_BYTES' | 'UPLOAD_MIN_BYTES_PER_SECOND'>) =>
  Math.max(120_000, Math.ceil(config.UPLOAD_LIMIT_BYTES / config.UPLOAD_MIN_BYTES_PER_SECOND) * 1000);

/**
 * The API's threads: how many requests may wait for each, and how long one may run. A prediction
 * holds its images on disk while it waits (64 images decode and run in seconds); a summary builds a
 * model (a second or two, then cached); an export loads and converts a whole model (ONNX of a 224 px
 * model takes up to a minute on 2 cores); a preflight decodes every image of a data set (minutes for
 * the largest upload).
 */
const THREAD_LIMITS = {
  predict: { maxPending: 16, timeoutMs: 120_000 },
  summary: { maxPending: 16, timeoutMs: 120_000 },
  export: { maxPending: 8, timeoutMs: 300_000 },
  preflightTimeoutMs: 600_000,
};

/** The longest an upload stays in `.incoming`: received, unpacked, then checked. A sweep must never take one still under way. */
export const incomingMaxAgeOf = (config: Config) => requestTimeoutOf(config) + UNPACK_TIMEOUT_MS + THREAD_LIMITS.preflightTimeoutMs;

const uploadLimitsOf = (config: Config): UploadLimits => ({
  maxArchiveBytes: config.UPLOAD_LIMIT_BYTES,
  maxFiles: config.UPLOAD_MAX_FILES,
  maxUnpackedBytes: config.UPLOAD_MAX_UNPACKED_BYTES,
  quotaBytes: config.QUOTA_DATASET_BYTES,
  minBytesPerSecond: config.UPLOAD_MIN_BYTES_PER_SECOND,
  rateWindowMs: config.UPLOAD_RATE_WINDOW_MS,
});

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

export type ApiServices = ReturnType<typeof composeApi>;

/** The API's worker threads, each with its queue bound and an owner's share of it. */
function apiThreads(config: Config) {
  const ownerShare = config.OWNER_SHARE_PERCENT / 100;
  const settings: ThreadSettings = {
    dataDir: config.DATA_DIR,
    artifacts: artifactStoreSettingsOf(config),
    backend: config.TFJS_BACKEND,
    nativeKernels: config.RETRAIN_NATIVE_KERNELS,
  };
  const thread = <Request, Response>(name: string, maxPending: number, timeoutMs: number) =>
    new ThreadRpc<Request, Response>(new URL(`./threads/${name}.thread.ts`, import.meta.url), settings, {
      maxPending,
      timeoutMs,
      ownerShare,
    });
  const { predict, summary, preflightTimeoutMs } = THREAD_LIMITS;
  return {
    ownerShare,
    inspector: new ModelInspector(settings, { ...summary, ownerShare }),
    exporter: new ThreadModelExporter(settings, { ...THREAD_LIMITS.export, ownerShare }),
    predictions: thread<PredictRequest, PredictOutcome>('predict', predict.maxPending, predict.timeoutMs),
    // Uploads have a preflight thread of their own, so a preflight someone asked for (a large synthetic
    // set, say) never holds up the check of an upload whose client waits for its answer.
    requestedPreflights: thread<PreflightRequest, PreflightReport>('preflight', config.UPLOAD_MAX_CONCURRENT, preflightTimeoutMs),
    uploadPreflights: thread<PreflightRequest, PreflightReport>('preflight', config.UPLOAD_MAX_CONCURRENT, preflightTimeoutMs),
  };
}

/**
 * The start-up tasks that need Redis, in the background: the connection does not queue commands, so
 * they wait for it (a Redis that is away at start delays them). Resolves when they have ended.
 */
function startRedisTasks(
  redis: RedisClient,
  config: Config,
  datasets: DatasetStore,
  log: FastifyBaseLogger,
  closing: AbortSignal,
): Promise<unknown> {
  const redisReady = whenReady(redis, START_UP_REDIS_WAIT_MS, closing);
  const ledger = new ArtifactLedger(redis, config.QUEUE_PREFIX);
  const adding = redisReady
    .then(() => ledger.addUpTotalOnce())
    .then(
      (added) => added && log.info('added up the bytes every job keeps (the metrics keep the total from now on)'),
      (error: Error) =>
        closing.aborted || log.warn({ err: error.message }, 'could not add up the bytes jobs keep; the next start tries again'),
    );
  const indexing = redisReady
    .then(() => datasets.indexOwners())
    .then(
      (indexed) => indexed.length && log.info({ indexed }, "added earlier uploads to their owners' index"),
      (error: Error) =>
        closing.aborted || log.warn({ err: error.message }, 'could not index earlier uploads by owner; the next start tries again'),
    );
  return Promise.all([adding, indexing]);
}

/** Queues the notices of a job that ended, to its owner's webhooks that asked for them. */
async function noticeOfJobEnd(jobs: JobService, webhooks: WebhookService, jobId: string): Promise<void> {
  const status = await jobs.status({ owner: ADMIN_OWNER, admin: true }, jobId);
  if (!status) return;
  const type = NOTICE_OF_STATE[status.state];
  if (type) await webhooks.notify(status.owner, type, jobId, status);
}

/** The notice a job's end state sends: a sweep's trial stopped early completed too. */
const NOTICE_OF_STATE: Partial<Record<JobState, WebhookEventType>> = {
  completed: 'job.completed',
  stopped_early: 'job.completed',
  failed: 'job.failed',
  cancelled: 'job.cancelled',
};

/** Runs `work` every `intervalMs` once started, never twice at once; `stop` waits for a run under way. */
function ticksOf(work: () => Promise<void>, intervalMs: number) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | null = null;
  return {
    start(log: FastifyBaseLogger) {
      timer = setInterval(() => {
        running ??= work()
          .catch((error: Error) => log.warn({ err: error.message }, 'could not advance the sweeps; the next tick tries again'))
          .finally(() => (running = null));
      }, intervalMs);
      timer.unref();
    },
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}

/**
 * What a team runs experiments with: model aliases, sweeps (advanced every SWEEP_TICK_MS) and
 * webhooks (notices of jobs that end and sweeps that complete, delivered from this process).
 */
function experimentServices({ config, redis, store, logger }: Omit<ApiDeps, 'queues'>, jobs: JobService, events: JobEventStream) {
  const models = new ModelService(jobs, store);
  const webhookOptions = {
    prefix: config.QUEUE_PREFIX,
    allowPrivate: config.WEBHOOK_ALLOW_PRIVATE,
    retryDelayMs: config.WEBHOOK_RETRY_DELAY_MS,
    maxPerOwner: config.WEBHOOK_MAX_PER_OWNER,
  };
  const webhooks = new WebhookService(redis, webhookOptions, logger);
  const deliveries = redisConnection(config, 'worker', logger);
  const sweepLimits = { prefix: config.QUEUE_PREFIX, maxTrials: config.SWEEP_MAX_TRIALS, quotaOpenJobs: config.QUOTA_OPEN_JOBS };
  const sweeps = new SweepService(redis, jobs, sweepLimits, logger, (owner, sweep) =>
    webhooks.notify(owner, 'sweep.completed', sweep.id, sweep),
  );
  const sweepTicks = ticksOf(() => sweeps.advanceAll(), config.SWEEP_TICK_MS);
  let stopNotices: () => unknown = () => undefined;
  return {
    models,
    sweeps,
    webhooks,
    start(log: FastifyBaseLogger) {
      sweepTicks.start(log);
      webhooks.startDelivering(deliveries);
      stopNotices = events.subscribe('*', ({ event, jobId }) => {
        if (event === 'completed' || event === 'failed')
          void noticeOfJobEnd(jobs, webhooks, jobId).catch((error: Error) =>
            log.warn({ jobId, err: error.message }, 'could not queue the notices of a job'),
          );
      });
    },
    async close() {
      await sweepTicks.stop();
      stopNotices();
      await webhooks.close();
      deliveries.disconnect();
    },
  };
}

/** Everything the routes use, built from the config; `start` runs the start-up tasks, `close` stops it all in order. */
export function composeApi({ config, redis, queues, store, logger }: ApiDeps, manifest: WeightsManifest) {
  const { ownerShare, inspector, exporter, predictions, requestedPreflights, uploadPreflights } = apiThreads(config);
  const catalog = new WeightsCatalog(new WeightsStore(store), manifest);
  const jobs = new JobService(queues, redis, store, catalog, jobServiceOptionsOf(config));
  const events = new JobEventStream(config, redis, queues.get(QueueName.Training).keys.events, logger);
  const experiments = experimentServices({ config, redis, store, logger }, jobs, events);
  const datasets = new DatasetStore(config.DATA_DIR, store, { redis, prefix: config.QUEUE_PREFIX }, uploadLimitsOf(config), (id) =>
    jobs.openJobsOnDataset(id),
  );
  const preflights = new Preflights(config.DATA_DIR, store, datasets.quota, (request, caller) => requestedPreflights.call(request, caller));
  const uploadDefaults = PreflightOptions.parse({});

  /** Runs once before the API listens; what needs the artifact store runs in the background, so the API starts while it is away. */
  async function start(log: FastifyBaseLogger): Promise<void> {
    const migrated = await datasets.migrateRecords();
    if (migrated.length) log.info({ migrated }, 'moved dataset records into the artifact store');
    const swept = await datasets.sweepIncoming(incomingMaxAgeOf(config));
    if (swept.length) log.warn({ swept }, 'removed uploads left half-received by a crashed process');
    const leftovers = await preflights.sweep(THREAD_LIMITS.preflightTimeoutMs);
    if (leftovers.length) log.warn({ leftovers }, 'removed synthetic sets a crashed process left from preflights');
    redisTasks = startRedisTasks(redis, config, datasets, log, closing.signal);
    experiments.start(log);
  }
  let redisTasks: Promise<unknown> = Promise.resolve();
  const closing = new AbortController();

  /**
   * What this host keeps of other hosts' and earlier releases' work, by the workers' policy
   * (CACHE_MAX_BYTES, CACHE_MAX_AGE_DAYS): uploads fetched from a shared store, synthetic sets.
   */
  async function evictHostCaches(): Promise<string[]> {
    const policy = cachePolicyOf(config);
    const caches = [UPLOAD_CACHE, SYNTHETIC_CACHE].map((folder) => path.join(config.DATA_DIR, folder));
    return (await Promise.all(caches.map((folder) => evictFolderCache(folder, policy)))).flat();
  }

  async function close(): Promise<void> {
    await experiments.close();
    await events.close();
    await Promise.all([inspector, exporter, predictions, requestedPreflights, uploadPreflights].map((t) => t.close()));
    await datasets.close();
    closing.abort();
    await redisTasks;
  }

  return {
    config,
    catalog,
    jobs,
    models: experiments.models,
    sweeps: experiments.sweeps,
    webhooks: experiments.webhooks,
    events,
    inspector,
    exporter,
    predictions,
    datasets,
    preflights,
    /** The check of an upload just received, on the uploads' own thread. */
    checkUpload: (id: string, caller: Caller) =>
      uploadPreflights.call({ dataset: { type: 'upload', id }, options: uploadDefaults, syntheticRoot: null }, caller),
    eventStreams: new SharedCapacity('event streams', config.EVENT_STREAMS_MAX, ownerShare),
    uploadSlots: new SharedCapacity('uploads being received', config.UPLOAD_MAX_CONCURRENT, ownerShare),
    start,
    evictHostCaches,
    close,
  };
}
