import { Queue, type Job, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type { JobSpec } from '../../schemas/job-spec.js';

export enum QueueName {
  Training = 'training',
}

export interface TrainingPayload {
  spec: JobSpec;
  submittedAt: string;
}

/** Ties every queue to its payload, so the compiler checks each enqueue. */
export interface JobPayloads {
  [QueueName.Training]: TrainingPayload;
}

export interface TrainingResult {
  epochsCompleted: number;
  resumedFromEpoch: number | null;
  validationAccuracy: number | null;
  artifacts: string;
}

export type TrainingJob = Job<TrainingPayload, TrainingResult>;

/** The reason a cancelled job fails with; the status API reports such jobs as `cancelled`. */
export const CANCELLED_REASON = 'cancelled by request';

export const redisKeys = (prefix: string) => ({
  cancel: (jobId: string) => `${prefix}:cancel:${jobId}`,
  worker: (workerId: string) => `${prefix}:workers:${workerId}`,
  workersPattern: `${prefix}:workers:*`,
  idempotency: (key: string) => `${prefix}:idempotency:${key}`,
});

/**
 * ioredis for BullMQ. Workers block on Redis, so their connection must retry forever
 * (`maxRetriesPerRequest: null`, BullMQ's production guide); the API fails fast instead.
 */
export function redisConnection(url: string, role: 'producer' | 'worker'): Redis {
  const redis = new Redis(url, {
    maxRetriesPerRequest: role === 'worker' ? null : 1,
    enableOfflineQueue: role === 'worker',
    lazyConnect: false,
  });
  // ioredis reconnects by itself; say so once per outage instead of once per attempt.
  let reported = false;
  redis.on('error', (error: Error) => {
    if (!reported) console.error(`redis ${url}: ${error.message} (reconnecting)`);
    reported = true;
  });
  redis.on('ready', () => (reported = false));
  return redis;
}

export interface QueueOptions {
  prefix: string;
  attempts: number;
}

/** Every process can enqueue through this; only worker processes consume. */
export class Queues {
  private readonly queues = new Map<QueueName, Queue>();

  constructor(
    private readonly connection: Redis,
    private readonly options: QueueOptions,
  ) {}

  get<Q extends QueueName>(name: Q): Queue<JobPayloads[Q]> {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: this.connection, prefix: this.options.prefix });
      this.queues.set(name, queue);
    }
    return queue as Queue<JobPayloads[Q]>;
  }

  async enqueue<Q extends QueueName>(name: Q, jobId: string, data: JobPayloads[Q]): Promise<Job<JobPayloads[Q]>> {
    const options: JobsOptions = {
      jobId,
      attempts: this.options.attempts,
      backoff: { type: 'exponential', delay: 5_000 },
      // Redis keeps queue state only; results live in the artifact store. Keep finished jobs' state
      // for a month so their status stays answerable.
      removeOnComplete: { age: 30 * 24 * 3600 },
      removeOnFail: { age: 30 * 24 * 3600 },
    };
    const queue = this.get(name) as unknown as Queue;
    return (await queue.add(name, data, options)) as Job<JobPayloads[Q]>;
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
