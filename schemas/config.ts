import path from 'node:path';
import { z } from 'zod';
import { BackendChoice } from './model.js';

const milliseconds = (fallback: number) =>
  z.coerce
    .number()
    .int()
    .min(100)
    .max(24 * 3600 * 1000)
    .default(fallback);

/** Every environment variable the service reads, parsed once at start-up. */
export const Config = z.object({
  REDIS_URL: z.string().url().default('redis://127.0.0.1:6379').describe('Redis for the BullMQ queue'),
  REDIS_CLUSTER_NODES: z
    .string()
    .regex(/^[\w.-]+:\d+(,[\w.-]+:\d+)*$/, 'host:port,host:port,...')
    .optional()
    .describe('A Redis Cluster to use instead of REDIS_URL (its user and password still apply); QUEUE_PREFIX must be a hash tag then'),
  QUEUE_PREFIX: z
    .string()
    .regex(/^(\{[\w-]+\}|[\w-]+)$/, 'letters, digits, _ and -, optionally in braces: {retrain}')
    .default('retrain')
    .describe('Redis key prefix; tests use one per file. In braces on a Redis Cluster, so every key is in one slot'),
  HOST: z.string().default('127.0.0.1').describe('API listen address (0.0.0.0 in containers)'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080).describe('API listen port'),
  DATA_DIR: z.string().default('data').describe('Root of folder datasets; job specs name paths relative to it'),
  ARTIFACTS_DIR: z.string().default('artifacts').describe('Local artifact store: checkpoints, summaries, metrics'),
  ARTIFACT_STORE: z
    .string()
    .regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[\w.\-/]*)?$/, 's3://bucket or s3://bucket/prefix')
    .optional()
    .describe('s3://bucket/prefix: artifacts in an S3-compatible object store (credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)'),
  S3_ENDPOINT: z.string().url().optional().describe("An S3-compatible server's URL (path-style requests); unset: AWS"),
  S3_REGION: z.string().default('us-east-1').describe("The object store's region"),
  WEIGHTS_MANIFEST: z
    .string()
    .optional()
    .describe(
      'A JSON file of weight variants (name -> url, bytes or mebibytes, sha256 or sha256Prefix, transform, top1) replacing the built-in torchvision manifest: mirrors, air-gapped sites',
    ),
  WEIGHTS_DOWNLOAD_TIMEOUT_MS: milliseconds(30_000).describe(
    'A weights download that waits this long for an answer or for bytes gives up its attempt (the next resumes where it broke off)',
  ),
  WEIGHTS_DOWNLOAD_RETRIES: z.coerce.number().int().min(0).max(10).default(3).describe('Attempts after the first, 2 s, 4 s, 8 s ... apart'),
  TFJS_BACKEND: z
    .enum(['auto', ...BackendChoice.options])
    .default('auto')
    .describe('auto tries node-gpu, node, wasm, cpu in that order'),
  RETRAIN_NATIVE_KERNELS: z
    .enum(['0', '1'])
    .default('1')
    .transform((value) => value === '1')
    .describe("1: on the wasm backend, run convolutions and matmuls with the oneDNN addon where it is built; 0: wasm's own"),
  // The training runs in a child process, so the worker's event loop stays free to renew the lock.
  // BullMQ renews the lock every half of it, so at a Redis crash it has at least half left: 150 s
  // rides out a 60 s outage (a lapsed lock would hand the job to another worker while this one trains).
  LOCK_DURATION_MS: milliseconds(150_000).describe(
    "BullMQ lock; a killed worker's job is taken over after this (its status says stalled within 3 heartbeats)",
  ),
  STALLED_INTERVAL_MS: milliseconds(30_000).describe('How often workers look for jobs whose lock expired'),
  MAX_STALLED_COUNT: z.coerce.number().int().min(0).max(100).default(3).describe('Worker deaths a job survives'),
  JOB_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(3).describe('Retries for failures worth a retry'),
  WORKER_HEARTBEAT_MS: milliseconds(5_000).describe('How often a worker renews its entry in /readyz'),
  WORKER_SHUTDOWN_GRACE_MS: milliseconds(60_000).describe(
    'On SIGTERM a worker lets the running step finish, saves the epoch so far and requeues the job; past this it exits anyway',
  ),
  BODY_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(1024 * 1024)
    .describe('Largest JSON body accepted (413 past it)'),
  API_IDLE_TIMEOUT_MS: milliseconds(60_000).describe(
    'A connection that sends nothing this long is closed (not while the server works on an upload, a preflight or a prediction)',
  ),
  EVENT_STREAMS_MAX: z.coerce
    .number()
    .int()
    .min(1)
    .default(500)
    .describe('Server-Sent Event streams (GET /v1/jobs/:id/events) one API process serves at once (503 past it)'),
  API_MAX_EVENT_LOOP_DELAY_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(1000)
    .describe('API answers 503 (Retry-After) while its event loop lags more than this; 0: off'),
  API_MAX_HEAP_USED_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .default(1024 ** 3)
    .describe('API answers 503 (Retry-After) while its JS heap holds more than this; 0: off'),
  UPLOAD_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(2 * 1024 ** 3)
    .describe('Largest dataset archive accepted (413 past it)'),
  UPLOAD_MIN_BYTES_PER_SECOND: z.coerce
    .number()
    .int()
    .min(1024)
    .default(1024 ** 2)
    .describe('The slowest upload rate served to the end: a request may take UPLOAD_LIMIT_BYTES at this rate (and at least 120 s)'),
  UPLOAD_MAX_CONCURRENT: z.coerce
    .number()
    .int()
    .min(1)
    .default(4)
    .describe('Uploads one API process receives at once, all owners (503 with Retry-After past it): each holds disk and a preflight'),
  UPLOAD_MAX_FILES: z.coerce.number().int().min(1).default(200_000).describe('Most files a dataset archive may hold'),
  UPLOAD_MAX_UNPACKED_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(20 * 1024 ** 3)
    .describe('Refuses archives (zip bombs) that unpack past this'),
  UPLOAD_RATE_WINDOW_MS: milliseconds(30_000).describe(
    'An upload that sends less than UPLOAD_MIN_BYTES_PER_SECOND over this long is cut off (408): a trickle cannot hold an upload slot',
  ),
  OWNER_SHARE_PERCENT: z.coerce
    .number()
    .int()
    .min(1)
    .max(100)
    .default(25)
    .describe(
      "The share of each per-process capacity (event streams, upload slots, each thread's queue) one owner may hold, at least one (429 with Retry-After past it); the admin has none",
    ),
  ALLOWED_HOSTS: z
    .string()
    .regex(/^[\w.-]+(,[\w.-]+)*$/, 'host names, comma-separated')
    .optional()
    .describe('Single-user mode answers only Host headers naming loopback (localhost, 127.0.0.1, [::1]) and these names (421 otherwise)'),
  TRUST_PROXY: z
    .string()
    .regex(/^(\d{1,2}|[\d.:a-fA-F/]+(,[\d.:a-fA-F/]+)*)$/, 'a hop count, or proxy addresses and CIDR ranges, comma-separated')
    .optional()
    .describe(
      "Behind a reverse proxy: the proxies whose X-Forwarded-For names the client (addresses or CIDRs), or their hop count; unset, the client is the socket's peer",
    ),
  ADMIN_API_KEY: z
    .string()
    .min(32, 'at least 32 characters (e.g. openssl rand -base64 32)')
    .optional()
    .describe('Turns API keys on: this key sees and manages everything; owners use keys from `npx retrain keys create`'),
  RATE_LIMIT_MAX: z.coerce
    .number()
    .int()
    .min(1)
    .default(600)
    .describe('Requests per key per window (429 with Retry-After past it); the admin is exempt'),
  RATE_LIMIT_WINDOW_MS: milliseconds(60_000).describe('The rate-limit window'),
  RATE_LIMIT_ANONYMOUS_MAX: z.coerce
    .number()
    .int()
    .min(1)
    .default(120)
    .describe('Per client address per window: requests refused for want of a valid key, and requests to /readyz (429 past it)'),
  QUOTA_OPEN_JOBS: z.coerce.number().int().min(1).default(20).describe("An owner's jobs queued or running at once (429 past it)"),
  QUOTA_DATASET_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(50 * 1024 ** 3)
    .describe("An owner's uploaded datasets, unpacked bytes in all (413 past it)"),
  QUOTA_ARTIFACT_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .default(200 * 1024 ** 3)
    .describe("Models and checkpoints an owner's jobs keep, bytes in all: past it new jobs are refused (429) until some are purged"),
  DOWNLOAD_CACHE_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .default(20 * 1024 ** 3)
    .describe('Download archives (built on first request) of all jobs together: past this, the least recently used go'),
  WEBHOOK_ALLOW_PRIVATE: z
    .enum(['true', 'false'])
    .default('false')
    .transform((value) => value === 'true')
    .describe('Let webhooks reach loopback, private and link-local addresses (a receiver on the same network)'),
  WEBHOOK_RETRY_DELAY_MS: z.coerce
    .number()
    .int()
    .min(10)
    .default(10_000)
    .describe("A failed delivery's first retry; each next one doubles"),
  WEBHOOK_MAX_PER_OWNER: z.coerce.number().int().min(1).max(1000).default(10).describe('Webhooks one owner may keep'),
  SWEEP_MAX_TRIALS: z.coerce.number().int().min(1).max(1000).default(100).describe('Trials one sweep may run (400 past it)'),
  SWEEP_TICK_MS: z.coerce
    .number()
    .int()
    .min(100)
    .default(2000)
    .describe('How often an API process looks at the running sweeps: queues their next trials, finishes those whose trials have all ended'),
  QUEUE_MAX_WAITING: z.coerce.number().int().min(1).default(1000).describe('Jobs waiting in the queue, all owners (503 past it)'),
  JOB_RETENTION_DAYS: z.coerce
    .number()
    .min(0.001)
    .max(3650)
    .default(30)
    .describe("A finished job's queue entry, index entries and artifacts are removed this long after it ends"),
  FEATURE_CACHE: z
    .enum(['0', '1'])
    .default('1')
    .transform((value) => value === '1')
    .describe(
      "1: feature_extraction without augmentation computes each image's CNN code once and caches it in the store, and fine_tuning keeps its frozen stages' output; 0: they run every step",
    ),
  FEATURE_CACHE_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .default(4 * 1024 ** 3)
    .describe(
      "fine_tuning without augmentation: the frozen stages' output for every image, kept in the worker's memory (FEATURE_CACHE=1); past this the frozen stages run every step",
    ),
  INT8_CALIBRATION_IMAGES: z.coerce
    .number()
    .int()
    .min(0)
    .max(4096)
    .default(256)
    .describe('Training images a finished job runs in float32 to set its int8 activation scales; 0: no int8 predictions'),
  INT8_CHECK_IMAGES: z.coerce
    .number()
    .int()
    .min(1)
    .max(100_000)
    .default(2000)
    .describe('Validation images, at most, on which int8 must agree with float32 (top-1) for int8 predictions to be offered'),
  CACHE_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1024 * 1024)
    .default(20 * 1024 ** 3)
    .describe('Each cache (synthetic data sets, CNN codes): past this, the least recently used entries go'),
  CACHE_MAX_AGE_DAYS: z.coerce.number().min(0.001).max(3650).default(14).describe('Cache entries unused this long are removed'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('pino level of every process'),
});
export type Config = z.infer<typeof Config>;

/** Multi-key commands and BullMQ's scripts need all of a queue's keys in one cluster slot: a hash-tag prefix. */
const CheckedConfig = Config.refine((config) => !config.REDIS_CLUSTER_NODES || /^\{.*\}$/.test(config.QUEUE_PREFIX), {
  path: ['QUEUE_PREFIX'],
  message: 'on a Redis Cluster (REDIS_CLUSTER_NODES), the prefix must be a hash tag such as {retrain}',
});

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = CheckedConfig.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid environment:\n${lines.join('\n')}`);
  }
  const config = parsed.data;
  return { ...config, DATA_DIR: path.resolve(config.DATA_DIR), ARTIFACTS_DIR: path.resolve(config.ARTIFACTS_DIR) };
}

/** The settings that say which artifact store to open (a worker thread gets exactly these). */
export type ArtifactStoreSettings = Pick<Config, 'ARTIFACTS_DIR' | 'ARTIFACT_STORE' | 'S3_ENDPOINT' | 'S3_REGION'>;

/** Only the store's settings, for a thread's workerData (the rest of the config holds secrets). */
export const artifactStoreSettingsOf = ({
  ARTIFACTS_DIR,
  ARTIFACT_STORE,
  S3_ENDPOINT,
  S3_REGION,
}: ArtifactStoreSettings): ArtifactStoreSettings => ({
  ARTIFACTS_DIR,
  ARTIFACT_STORE,
  S3_ENDPOINT,
  S3_REGION,
});

/** Where Redis is: one server, or the nodes of a cluster. */
export type RedisTarget = Pick<Config, 'REDIS_URL' | 'REDIS_CLUSTER_NODES'>;
