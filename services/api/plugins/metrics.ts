import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ArtifactLedger } from '../../../common/artifact-ledger.js';
import { CANCELLED_REASON, QueueName, type Queues } from '../../../common/queue-facade.js';
import { redisKeys } from '../../../common/redis-keys.js';
import { hashTotal, type RedisClient } from '../../../common/redis-connection.js';
import { WorkerRegistry } from '../../../common/worker-registry.js';
import { TrainingPayload, WorkerProgress } from '../../../schemas/queue.js';
import type { JobEventStream } from '../job-events.js';
import { guardAdmin, type AuthMode } from './auth.js';

export interface MetricsDeps {
  redis: RedisClient;
  events: JobEventStream;
  queues: Queues;
  prefix: string;
  mode: AuthMode;
  adminKey: string | undefined;
}

const JOB_STATES = ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed', 'paused'] as const;
const REQUEST_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120];
const JOB_SECONDS = [10, 30, 60, 300, 900, 1800, 3600, 7200, 14_400, 43_200, 86_400];

/** Queue depth, live workers and kept bytes, read from Redis when Prometheus scrapes: counts and counters, never a keyspace scan. */
function queueGauges(registry: Registry, { redis, queues, prefix }: MetricsDeps): void {
  const keys = redisKeys(prefix);
  const workers = new WorkerRegistry(redis, prefix);
  const ledger = new ArtifactLedger(redis, prefix);
  new Gauge({
    name: 'retrain_queue_jobs',
    help: 'Training jobs in the queue, by BullMQ state',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const counts = await queues.get(QueueName.Training).getJobCounts(...JOB_STATES);
      for (const state of JOB_STATES) this.set({ state }, counts[state] ?? 0);
    },
  });
  new Gauge({
    name: 'retrain_workers',
    help: 'Workers with a live heartbeat, by tfjs backend and the kernels under it',
    labelNames: ['backend', 'kernels'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const worker of await workers.live()) this.inc({ backend: worker.backend.backend, kernels: worker.backend.kernels });
    },
  });
  new Gauge({
    name: 'retrain_job_images_per_second',
    help: 'Training throughput of each running job over its last progress report (series only for running jobs)',
    labelNames: ['job_id', 'mode'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const job of await queues.get(QueueName.Training).getJobs(['active'])) {
        const rate = WorkerProgress.safeParse(job.progress).data?.imagesPerSecond;
        const mode = TrainingPayload.safeParse(job.data).data?.spec.mode ?? 'unknown';
        if (job.id && typeof rate === 'number') this.set({ job_id: job.id, mode }, rate);
      }
    },
  });
  new Gauge({
    name: 'retrain_artifact_bytes',
    help: 'Bytes in the artifact store: models and checkpoints jobs keep (as their workers last measured), and download archives',
    labelNames: ['kind'],
    registers: [registry],
    async collect() {
      this.set({ kind: 'models' }, await ledger.total());
      this.set({ kind: 'download_archives' }, await hashTotal(redis, keys.archiveBytes));
    },
  });
}

/**
 * Durations and outcomes of finished jobs, from BullMQ's event stream: every API process sees every
 * job, wherever it trained (sum one instance, or take the max across instances).
 */
function jobOutcomes(app: FastifyInstance, registry: Registry, { events, queues }: MetricsDeps): void {
  const seconds = new Histogram({
    name: 'retrain_job_duration_seconds',
    help: 'Wall time of finished jobs from start to end, by transfer mode and outcome (completed, failed, cancelled)',
    labelNames: ['mode', 'outcome'],
    buckets: JOB_SECONDS,
    registers: [registry],
  });
  const queue = queues.get(QueueName.Training);
  const observe = async (jobId: string, outcome: string) => {
    const job = await queue.getJob(jobId);
    if (!job?.finishedOn || !job.processedOn) return;
    const mode = TrainingPayload.safeParse(job.data).data?.spec.mode ?? 'unknown';
    seconds.observe({ mode, outcome }, (job.finishedOn - job.processedOn) / 1000);
  };
  const log = (error: Error) => app.log.warn({ err: error.message }, 'metrics: could not read a finished job');
  const stop = events.subscribe('*', ({ event, jobId, fields }) => {
    if (event === 'completed') void observe(jobId, 'completed').catch(log);
    if (event === 'failed') void observe(jobId, fields.failedReason === CANCELLED_REASON ? 'cancelled' : 'failed').catch(log);
  });
  app.addHook('onClose', async () => stop());
}

/**
 * Prometheus text exposition at GET /metrics (the admin key when API keys are on): HTTP requests by
 * route and status with latency histograms, the queue, the workers, kept bytes, finished jobs, and the
 * process itself. Call before the routes are registered: the request hook counts only routes added after it.
 */
export async function registerMetrics(app: FastifyInstance, deps: MetricsDeps): Promise<void> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'retrain_api_' });
  const labelNames = ['method', 'route', 'status'] as const;
  const requests = new Counter({ name: 'http_requests_total', help: 'HTTP requests answered', labelNames, registers: [registry] });
  const latency = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time to answer HTTP requests',
    labelNames,
    buckets: REQUEST_SECONDS,
    registers: [registry],
  });
  app.addHook('onResponse', async (request, reply) => {
    // The route's pattern, never the raw URL: ids would make a series per job.
    const labels = { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) };
    requests.inc(labels);
    latency.observe(labels, reply.elapsedTime / 1000);
  });
  queueGauges(registry, deps);
  jobOutcomes(app, registry, deps);
  await app.register(async (scope) => {
    guardAdmin(scope, deps.mode, deps.adminKey);
    scope.get('/metrics', { schema: { description: 'Prometheus text exposition (text/plain; version=0.0.4)' } }, async (_request, reply) =>
      reply.type(registry.contentType).send(await registry.metrics()),
    );
  });
}
