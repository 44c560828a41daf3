// The training worker process: consumes the training queue, one job at a time (one per GPU).
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Worker } from 'bullmq';
import { createLogger } from '../../common/logger.js';
import { QueueName, type PayloadOf, type ResultOf } from '../../common/queue-facade.js';
import { redisKeys } from '../../common/redis-keys.js';
import { redisConnection } from '../../common/redis-connection.js';
import { WorkerRegistry } from '../../common/worker-registry.js';
import { loadConfig } from '../../schemas/config.js';
import type { WorkerHeartbeat } from '../../schemas/queue.js';
import { BackendProbe } from '../../schemas/model.js';

const PROBE = fileURLToPath(new URL('./backend-probe.ts', import.meta.url));
/** One processor file per queue: the compiler refuses a queue without one. */
const PROCESSORS: Record<QueueName, string> = {
  [QueueName.Training]: fileURLToPath(new URL('./training.processor.ts', import.meta.url)),
};

/** The backend the training children will get, chosen by a short-lived process, so this one never loads tfjs. */
async function probeBackend(): Promise<BackendProbe> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', PROBE], { maxBuffer: 1024 * 1024 });
  return BackendProbe.parse(JSON.parse(stdout.trim().split('\n').at(-1) ?? ''));
}

const config = loadConfig();
const log = createLogger('worker', config.LOG_LEVEL);
// Decide the backend once, in a probe process, and pin it for the sandboxed children through the environment.
const { nativeKernelsMissing, ...backend } = await probeBackend();
process.env.TFJS_BACKEND = backend.choice;
if (nativeKernelsMissing) log.warn({ kernels: backend.kernels }, `native kernels off: ${nativeKernelsMissing}`);

const connection = redisConnection(config, 'worker', log);
const workerId = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
const worker = new Worker<PayloadOf<QueueName.Training>, ResultOf<QueueName.Training>>(QueueName.Training, PROCESSORS[QueueName.Training], {
  connection,
  prefix: config.QUEUE_PREFIX,
  concurrency: 1,
  useWorkerThreads: false,
  // The processor runs in a child process, so this event loop stays free to renew the lock every
  // lockDuration/2 however long a step takes; a killed worker's job is taken over once the lock
  // lapses and a stalled check runs (lockDuration + stalledInterval at most).
  lockDuration: config.LOCK_DURATION_MS,
  stalledInterval: config.STALLED_INTERVAL_MS,
  maxStalledCount: config.MAX_STALLED_COUNT,
});

const keys = redisKeys(config.QUEUE_PREFIX);
const registry = new WorkerRegistry(connection, config.QUEUE_PREFIX);
/** Jobs this worker trains now: each gets a heartbeat key, so the API can tell a dead worker's job (stalled). */
const training = new Set<string>();
/** A heartbeat lives three beats: one missed beat is not a death. */
const heartbeatTtlMs = config.WORKER_HEARTBEAT_MS * 3;
const beatJob = (jobId: string) => connection.set(keys.jobHeartbeat(jobId), workerId, 'PX', heartbeatTtlMs);
const ended = (jobId: string | undefined) => {
  if (!jobId) return;
  training.delete(jobId);
  void connection.del(keys.jobHeartbeat(jobId)).catch(() => undefined);
};

worker.on('active', (job) => {
  log.info({ jobId: job.id, attemptsMade: job.attemptsMade }, 'job started');
  if (!job.id) return;
  training.add(job.id);
  void beatJob(job.id).catch(() => undefined);
});
worker.on('completed', (job, result) => {
  ended(job.id);
  log.info({ jobId: job.id, attemptsMade: job.attemptsMade, result }, 'job completed');
});
worker.on('failed', (job, error) => {
  ended(job?.id);
  log.warn({ jobId: job?.id, attemptsMade: job?.attemptsMade, err: error.message }, 'job failed');
});
// Each of BullMQ's connections reports every reconnect attempt: say so once per outage.
let outage = false;
worker.on('error', (error) => {
  if (!outage) log.error({ err: error.message }, 'worker error (reconnecting if Redis is away)');
  outage = true;
});
connection.on('ready', () => (outage = false));

const heartbeat = async () => {
  const record: WorkerHeartbeat = {
    workerId,
    host: hostname(),
    pid: process.pid,
    backend,
    queues: [QueueName.Training],
    at: new Date().toISOString(),
  };
  await registry.beat(record, heartbeatTtlMs);
  await Promise.all([...training].map(beatJob));
};
await heartbeat();
const timer = setInterval(
  () => void heartbeat().catch((error: Error) => log.warn({ err: error.message }, 'heartbeat failed')),
  config.WORKER_HEARTBEAT_MS,
);
log.info({ workerId, backend, queue: QueueName.Training, prefix: config.QUEUE_PREFIX }, 'worker ready');

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'shutting down');
  clearInterval(timer);
  const forced = setTimeout(() => {
    log.warn('grace period over; the running job resumes from its last checkpoint elsewhere');
    process.exit(1);
  }, config.WORKER_SHUTDOWN_GRACE_MS);
  forced.unref();
  // The running job finishes its step, saves the epoch so far and goes back to the queue.
  worker.cancelAllJobs('worker stopping');
  await worker.close();
  await Promise.all([...training].map((jobId) => connection.del(keys.jobHeartbeat(jobId))));
  log.info('worker closed');
  await registry.leave(workerId);
  await connection.quit();
  log.info('redis closed');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
