import { Queue, type Job, type JobsOptions } from 'bullmq';
import { Cluster, Redis } from 'ioredis';
import type { Config, RedisTarget } from '../schemas/config.js';
import type { TrainingPayload, TrainingResult } from '../schemas/queue.js';
import { UnavailableError } from './errors.js';
import type { Logger } from './logger.js';

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

/** Redis keys the service keeps beside BullMQ's own, all under the queue prefix. */
export const redisKeys = (prefix: string) => ({
  cancel: (jobId: string) => `${prefix}:cancel:${jobId}`,
  /** Live workers: when each one's heartbeat lapses (a sorted set, scored in ms) and its last heartbeat record (a hash). */
  workers: `${prefix}:workers`,
  workerRecords: `${prefix}:worker-records`,
  /** Renewed by the worker training the job, with the worker heartbeat; absent: nobody is. */
  jobHeartbeat: (jobId: string) => `${prefix}:job-heartbeat:${jobId}`,
  idempotency: (owner: string, key: string) => `${prefix}:idempotency:${owner}:${key}`,
  apiKeys: `${prefix}:api-keys`,
  /** @fastify/rate-limit's counters of requests per key (its namespace: it appends the key id). */
  rateLimitNamespace: `${prefix}:rate:`,
  /** Requests without a valid key, per client address, in the current window. */
  anonymousRequests: (address: string) => `${prefix}:rate-anonymous:${address}`,
  /** Held by the API process that runs this hour's retention sweep. */
  retentionSweepLock: `${prefix}:retention-sweep`,
  /** Job ids by submission time (sorted sets): every job, and each owner's. */
  allJobs: `${prefix}:jobs`,
  ownerJobs: (owner: string) => `${prefix}:owner-jobs:${owner}`,
  /** Each owner's jobs that may still be queued or running (the quota counts these). */
  openJobs: (owner: string) => `${prefix}:open-jobs:${owner}`,
  /** The jobs that train on an uploaded dataset (it cannot be deleted while one is open). */
  datasetJobs: (datasetId: string) => `${prefix}:dataset-jobs:${datasetId}`,
  /** Bytes of models and checkpoints each of an owner's jobs keeps (a hash: job id -> bytes), as its worker last measured. */
  artifactBytes: (owner: string) => `${prefix}:artifact-bytes:${owner}`,
  /** Their sum over every owner, kept with each change (ArtifactLedger). */
  artifactBytesTotal: `${prefix}:artifact-bytes-total`,
  /** Each owner's unpacked upload bytes (a hash: upload id -> bytes) and reservations of uploads and preflights under way. */
  datasetBytes: (owner: string) => `${prefix}:dataset-bytes:${owner}`,
  /** Held (with a lease) by the process downloading a weights variant: the others wait for its copy. */
  weightsLock: (variant: string) => `${prefix}:weights-lock:${variant}`,
  /** Download archives built on request: last use (sorted set) and size (hash), by store key. */
  archivesUsed: `${prefix}:archives:used`,
  archiveBytes: `${prefix}:archives:bytes`,
});

/** redis-server's arguments for a local server that keeps the queue across restarts (AOF), as `npm start` runs it. */
export const persistentRedisArgs = (port: number, dir: string): string[] => [
  ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''],
  ...['--appendonly', 'yes', '--appendfsync', 'everysec', '--maxmemory-policy', 'noeviction'],
];

/** A connection to one Redis server or to a Redis Cluster: the same commands on either. */
export type RedisClient = Redis | Cluster;

/**
 * ioredis for BullMQ. Workers block on Redis, so their connection must retry forever
 * (`maxRetriesPerRequest: null`, https://docs.bullmq.io/guide/going-to-production); the API fails
 * fast instead, and answers 503 while Redis is away.
 */
export function redisConnection(target: RedisTarget, role: 'producer' | 'worker', log: Logger): RedisClient {
  const options = { maxRetriesPerRequest: role === 'worker' ? null : 1, enableOfflineQueue: role === 'worker', lazyConnect: false };
  let redis: RedisClient;
  if (target.REDIS_CLUSTER_NODES) {
    // The cluster's own address list replaces REDIS_URL's host; its credentials and TLS still apply.
    const { username, password, protocol } = new URL(target.REDIS_URL);
    const nodes = target.REDIS_CLUSTER_NODES.split(',').map((node) => {
      const [host, port] = node.split(':');
      return { host, port: Number(port) };
    });
    redis = new Cluster(nodes, {
      enableOfflineQueue: options.enableOfflineQueue,
      redisOptions: {
        ...options,
        username: username || undefined,
        password: password ? decodeURIComponent(password) : undefined,
        tls: protocol === 'rediss:' ? {} : undefined,
      },
    });
  } else {
    redis = new Redis(target.REDIS_URL, options);
  }
  const where = target.REDIS_CLUSTER_NODES ?? target.REDIS_URL.replace(/\/\/[^@]*@/, '//');
  // ioredis reconnects by itself; say so once per outage instead of once per attempt.
  let reported = false;
  redis.on('error', (error: Error) => {
    if (!reported) log.error({ redis: where, err: error.message }, 'redis unreachable (reconnecting)');
    reported = true;
  });
  redis.on('ready', () => (reported = false));
  return redis;
}

/** The sum of the values of hashes that count bytes per member (kept by jobs, by archives). */
export async function hashTotal(redis: RedisClient, ...keys: string[]): Promise<number> {
  let total = 0;
  for (const key of keys) for (const bytes of await redis.hvals(key)) total += Number(bytes);
  return total;
}

/** Every key matching a pattern, by SCAN (on each master of a cluster): never KEYS, which blocks the server. */
export async function scanKeys(redis: RedisClient, pattern: string): Promise<string[]> {
  const servers = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const keys: string[] = [];
  for (const server of servers) {
    let cursor = '0';
    do {
      const [next, batch] = await server.scan(cursor, 'MATCH', pattern, 'COUNT', 100);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== '0');
  }
  return keys;
}

/** The errors ioredis raises while the server is unreachable (as opposed to a command's own error). */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.name === 'MaxRetriesPerRequestError') return true;
  if (error.name === 'ClusterAllFailedError') return true;
  return /Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|None of startup nodes|Cluster isn't ready|CLUSTERDOWN/.test(
    error.message,
  );
}

/**
 * Resolves once the connection is ready, or rejects with UnavailableError after `timeoutMs`. BullMQ
 * waits for a lost connection indefinitely: callers that answer clients ask this first, so an outage
 * is a prompt 503 rather than a hung request.
 */
export function whenReady(redis: RedisClient, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new UnavailableError(`Redis is unreachable (connection ${redis.status})`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  });
}

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
    };
    return this.get(name).add(name, data, options);
  }

  async close(): Promise<void> {
    await Promise.all(Object.values(this.queues).map((q) => q.close()));
  }
}
