// The training worker process: consumes the training queue, one job at a time (one per GPU).
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Worker } from 'bullmq';
import { loadConfig } from '../../schemas/config.js';
import { QueueName, redisConnection, redisKeys, type TrainingPayload, type TrainingResult } from '../../services/queue/queues.js';
import { selectBackend } from '../engine/backend.js';

const PROCESSORS: Record<QueueName, string> = {
  [QueueName.Training]: fileURLToPath(new URL('./training.processor.ts', import.meta.url)),
};
/** Graceful stop waits this long for the running job, then leaves it to be resumed from its checkpoint. */
const SHUTDOWN_GRACE_MS = 10_000;

const log = (message: string, fields: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), role: 'worker', message, ...fields })}\n`);

const config = loadConfig();
// Decide the backend here, once, and pin it for the sandboxed children through the environment.
const backend = await selectBackend(config.TFJS_BACKEND);
process.env.TFJS_BACKEND = backend.choice;
for (const name of Object.values(QueueName)) if (!PROCESSORS[name]) throw new Error(`queue ${name} has no processor`);

const connection = redisConnection(config.REDIS_URL, 'worker');
const workerId = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
const worker = new Worker<TrainingPayload, TrainingResult>(QueueName.Training, PROCESSORS[QueueName.Training], {
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

worker.on('active', (job) => log('job started', { jobId: job.id, attemptsMade: job.attemptsMade }));
worker.on('completed', (job, result) => log('job completed', { jobId: job.id, attemptsMade: job.attemptsMade, result }));
worker.on('failed', (job, error) => log('job failed', { jobId: job?.id, attemptsMade: job?.attemptsMade, error: error.message }));
worker.on('error', (error) => log('worker error', { error: error.message }));

const heartbeat = async () => {
  const record = { workerId, host: hostname(), pid: process.pid, backend, queues: [QueueName.Training], at: new Date().toISOString() };
  await connection.set(redisKeys(config.QUEUE_PREFIX).worker(workerId), JSON.stringify(record), 'PX', config.WORKER_HEARTBEAT_MS * 3);
};
await heartbeat();
const timer = setInterval(() => heartbeat().catch((error) => log('heartbeat failed', { error: error.message })), config.WORKER_HEARTBEAT_MS);
log('worker ready', { workerId, backend, queue: QueueName.Training, prefix: config.QUEUE_PREFIX });

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log('shutting down', { signal });
  clearInterval(timer);
  const forced = setTimeout(() => {
    log('grace period over; the running job resumes from its checkpoint elsewhere');
    process.exit(1);
  }, SHUTDOWN_GRACE_MS);
  forced.unref();
  await worker.close();
  log('worker closed');
  await connection.del(redisKeys(config.QUEUE_PREFIX).worker(workerId));
  await connection.quit();
  log('redis closed');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
