import { Queue, type Job, type JobsOptions } from 'bullmq';
import type { Config } from '../schemas/config.js';
import type { TrainingPayload, TrainingResult } from '../schemas/queue.js';
import type { RedisClient } from './redis-connection.js';

export enum QueueName {
  Training = 'training',
}

/** Ties every queue to its payload and result, so the compiler checks each enqueue and each processor. */
export interface QueueContracts {
  [QueueName.Training]: { payload: TrainingPayload; result: TrainingResult };
}
export type PayloadOf<Q extends QueueName> = QueueContracts[Q]['payload'];
export type ResultOf<Q extends QueueName> = QueueContracts[Q]['result'];

export type TrainingJob = Job<TrainingPayload, TrainingResult>;
/** BullMQ's queue with its payload and result types spelled out (its defaults are conditional types). */
type TypedQueue<Q extends QueueName> = Queue<PayloadOf<Q>, ResultOf<Q>, string, PayloadOf<Q>, ResultOf<Q>, string>;

/** The reason a cancelled job fails with; the status API reports such jobs as `cancelled`. */
export const CANCELLED_REASON = 'cancelled by request';

export interface QueueOptions {
  prefix: string;
  attempts: number;
  /** How long BullMQ keeps a finished job (default 30 days); the API's retention sweep removes its artifacts then. */
  retentionSeconds?: number;
}

/** The queue as the environment sets it up (the API and the tests build theirs alike). */
export const queueOptionsOf = (config: Pick<Config, 'QUEUE_PREFIX' | 'JOB_ATTEMPTS' | 'JOB_RETENTION_DAYS'>): QueueOptions => ({
  prefix: config.QUEUE_PREFIX,
  attempts: config.JOB_ATTEMPTS,
  retentionSeconds: config.JOB_RETENTION_DAYS * 24 * 3600,
});

/** Retries back off 5 s, 10 s, 20 s, ...: long enough for a restarted Redis or a freed GPU. */
const RETRY_BACKOFF_MS = 5_000;
/** Redis keeps queue state only (results live in the artifact store): finished jobs stay answerable for a month. */
const FINISHED_JOB_RETENTION_SECONDS = 30 * 24 * 3600;

/** A job's own log (GET /v1/jobs/:id/logs) keeps its last this many lines, for as long as the job is kept. */
export const JOB_LOG_LINES_KEPT = 2000;

/** Every process can enqueue through this; only worker processes consume. */
export class Queues {
  private readonly queues: { [Q in QueueName]?: TypedQueue<Q> } = {};

  constructor(
    private readonly connection: RedisClient,
    private readonly options: QueueOptions,
  ) {}

  get<Q extends QueueName>(name: Q): TypedQueue<Q> {
    const existing = this.queues[name];
    if (existing) return existing;
    const queue: TypedQueue<Q> = new Queue(name, { connection: this.connection, prefix: this.options.prefix });
    this.queues[name] = queue;
    return queue;
  }

  async enqueue<Q extends QueueName>(name: Q, jobId: string, data: PayloadOf<Q>): Promise<Job<PayloadOf<Q>, ResultOf<Q>, string>> {
    const retention = { age: this.options.retentionSeconds ?? FINISHED_JOB_RETENTION_SECONDS };
    const options: JobsOptions = {
      jobId,
      attempts: this.options.attempts,
      backoff: { type: 'exponential', delay: RETRY_BACKOFF_MS },
      removeOnComplete: retention,
      removeOnFail: retention,
      keepLogs: JOB_LOG_LINES_KEPT,
    };
    return this.get(name).add(name, data, options);
  }

  async close(): Promise<void> {
    await Promise.all(Object.values(this.queues).map((q) => q.close()));
  }
}
