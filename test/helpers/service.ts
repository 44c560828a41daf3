import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import supertest from 'supertest';
import type { ArtifactStore } from '../../common/artifact-store.js';
import { redisKeys } from '../../common/redis-keys.js';
import { type RedisClient } from '../../common/redis-connection.js';
import { WeightsStore } from '../../common/weights-store.js';
import { storeVariant } from '../../engine/model/weight-variants.js';
import { DEFAULT_TRANSFORM } from '../../schemas/weights.js';
import type { Config } from '../../schemas/config.js';
import type { JobStatus } from '../../schemas/job-status.js';
import type { Metrics } from '../../schemas/metrics.js';
import { testApp } from './app.js';
import { standInReference, tempDir } from './torch.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

export interface TestService {
  config: Config;
  env: Record<string, string>;
  app: Awaited<ReturnType<typeof testApp>>['app'];
  /** Requests as the admin when API keys are on (ADMIN_API_KEY in the env), else as the single user. */
  http: () => ReturnType<typeof supertest.agent>;
  /** Requests with this bearer key. */
  as: (key: string) => ReturnType<typeof supertest.agent>;
  redis: RedisClient;
  store: ArtifactStore;
  /** A worker process; `hostEnv` overrides the service's environment (another host's own folders). */
  startWorker(hostEnv?: Record<string, string>): Promise<WorkerProcess>;
  stop(): Promise<void>;
}

export interface WorkerProcess {
  child: ChildProcess;
  output: () => string;
  /** Resolves once the worker has printed `text` (it logs after the state it reports is visible to the API); fails if it exits or takes over `timeoutMs`. */
  logged(text: string, timeoutMs?: number): Promise<void>;
  /** SIGKILL the worker and its sandboxed training child: a crash, not a shutdown. */
  kill(): Promise<void>;
  /** SIGTERM to the worker alone, as `docker stop` does; resolves with its exit code. */
  terminate(): Promise<number | null>;
}

/**
 * The real API (in-process, for supertest) on a real Redis, with real worker processes; every test
 * file passes its own queue prefix and gets its own data and artifact folders.
 */
export async function startService(prefix: string, extraEnv: Record<string, string> = {}): Promise<TestService> {
  const scratch = mkdtempSync(path.join(os.tmpdir(), `retrain-${prefix}-`));
  const env: Record<string, string> = {
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    QUEUE_PREFIX: `test-${prefix}-${process.pid}`,
    DATA_DIR: path.join(scratch, 'data'),
    ARTIFACTS_DIR: path.join(scratch, 'artifacts'),
    TFJS_BACKEND: 'wasm',
    LOCK_DURATION_MS: '4000',
    STALLED_INTERVAL_MS: '2000',
    WORKER_HEARTBEAT_MS: '1000',
    JOB_ATTEMPTS: '1',
    LOG_LEVEL: 'warn',
    // The in-process API shares its event loop and heap with tests that run models themselves:
    // overload protection would answer them 503 (its own test sets these low on purpose). Off, not
    // merely high: a loop blocked for a whole sample reads as an infinite delay in under-pressure.
    API_MAX_EVENT_LOOP_DELAY_MS: '0',
    API_MAX_HEAP_USED_BYTES: '0',
    ...extraEnv,
  };
  const { config, app, redis, store, close } = await testApp(prefix, scratch, env);
  const workers: WorkerProcess[] = [];

  async function startWorker(hostEnv: Record<string, string> = {}): Promise<WorkerProcess> {
    let output = '';
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'workers/training/main.ts')], {
      cwd: ROOT,
      // Info level: the tests read the worker's own lines ("worker ready", "job completed").
      env: { ...process.env, ...env, ...hostEnv, LOG_LEVEL: 'info' },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const worker: WorkerProcess = {
      child,
      output: () => output,
      logged: async (text, timeoutMs = 60_000) => {
        const deadline = Date.now() + timeoutMs;
        while (!output.includes(text)) {
          if (child.exitCode !== null) throw new Error(`worker exited before "${text}":\n${output.slice(-3000)}`);
          if (Date.now() > deadline) throw new Error(`worker did not print "${text}":\n${output.slice(-3000)}`);
          await sleep(100);
        }
      },
      kill: async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        process.kill(-child.pid!, 'SIGKILL');
        await exited;
      },
      terminate: async () => {
        const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        return exited;
      },
    };
    workers.push(worker);
    await worker.logged('worker ready');
    return worker;
  }

  async function stop() {
    await Promise.all(workers.map((w) => w.kill()));
    await close();
    rmSync(scratch, { recursive: true, force: true });
  }

  const as = (key: string) => supertest.agent(app.server).set('authorization', `Bearer ${key}`);
  const http = () => (env.ADMIN_API_KEY ? as(env.ADMIN_API_KEY) : supertest.agent(app.server));
  return { config, env, app, http, as, redis, store, startWorker, stop };
}

/** supertest parser that keeps a download's bytes. */
export const binary = (
  response: { on(event: string, listener: (chunk?: Buffer) => void): unknown },
  callback: (error: Error | null, body: Buffer) => void,
) => {
  const chunks: Buffer[] = [];
  response.on('data', (chunk) => chunks.push(chunk!));
  response.on('end', () => callback(null, Buffer.concat(chunks)));
};

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What every status must show: a phase that agrees with the state. */
export function assertStateAndPhaseAgree(status: JobStatus): void {
  const { state } = status;
  const { phase } = status.progress;
  const agree =
    state === 'queued'
      ? phase === 'queued'
      : state === 'completed'
        ? phase === 'done'
        : state === 'running'
          ? phase !== 'queued' && phase !== 'done'
          : true;
  if (!agree) throw new Error(`job ${status.id} is ${state} with phase ${phase}`);
}

/** Polls GET /v1/jobs/:id every `intervalMs` until `done` holds; fails with the last status after `timeoutMs`. */
export async function pollJob(
  service: TestService,
  id: string,
  done: (s: JobStatus) => boolean,
  timeoutMs = 300_000,
  intervalMs = 250,
): Promise<JobStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: JobStatus | undefined;
  while (Date.now() < deadline) {
    const response = await service.http().get(`/v1/jobs/${id}`);
    if (response.status !== 200) throw new Error(`GET /v1/jobs/${id} answered ${response.status}: ${response.text}`);
    last = response.body as JobStatus;
    assertStateAndPhaseAgree(last);
    if (done(last)) return last;
    await sleep(intervalMs);
  }
  throw new Error(`job ${id} did not reach the expected status in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

/** Polls /readyz until it answers 200: the API reconnects to a Redis that came back on its own backoff (up to 2 s). */
export async function untilReady(service: TestService, attempts = 200): Promise<void> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    if ((await service.http().get('/readyz')).status === 200) return;
    await sleep(250);
  }
  throw new Error(`/readyz did not answer 200 in ${attempts} attempts`);
}

export const finished = (s: JobStatus) => ['completed', 'failed', 'cancelled'].includes(s.state);

export { redisKeys };

/** Submits a spec, waits for it to finish, and requires that it completed; returns its id and metrics. */
export async function completedJob(service: TestService, spec: object, timeoutMs = 600_000): Promise<{ id: string; metrics: Metrics }> {
  const submitted = await service.http().post('/v1/jobs').send(spec);
  if (submitted.status !== 202) throw new Error(`POST /v1/jobs answered ${submitted.status}: ${submitted.text}`);
  const status = await pollJob(service, submitted.body.id, finished, timeoutMs);
  if (status.state !== 'completed') throw new Error(`job ${status.id} ended ${status.state}: ${JSON.stringify(status.failure)}`);
  return { id: status.id, metrics: (await service.http().get(`/v1/jobs/${status.id}/metrics`)).body as Metrics };
}

/**
 * Stores a stand-in for torchvision's ImageNet weights as the `imagenet` variant, as `retrain weights
 * import` does: ImageNet weights cannot be downloaded here, so PyTorch writes torchvision's ResNet-50
 * with seeded random weights and data-calibrated BatchNorm statistics.
 */
export async function storeStandInWeights(store: ArtifactStore, file: string): Promise<void> {
  const bytes = readFileSync(file);
  await storeVariant(new WeightsStore(store), bytes, {
    name: 'imagenet',
    source: `a stand-in PyTorch wrote (${path.basename(file)})`,
    sourceSha256: createHash('sha256').update(bytes).digest('hex'),
    transform: DEFAULT_TRANSFORM,
    top1: null,
  });
}

/**
 * A service with one worker, and stand-in `imagenet` weights in its store. `standIn` is PyTorch's folder
 * for them (shared, read-only: weights.safetensors, inputs and logits per size); `scratch` is the test's
 * own, removed when the service stops.
 */
export async function startServiceWithStandInWeights(prefix: string, seed: number, sizes: number[], extraEnv: Record<string, string> = {}) {
  const standIn = standInReference(['--seed', String(seed), '--sizes', ...sizes.map(String)]);
  const scratch = tempDir(prefix);
  const service = await startService(prefix, extraEnv);
  await storeStandInWeights(service.store, path.join(standIn, 'weights.safetensors'));
  await service.startWorker();
  const stop = async () => {
    await service.stop();
    rmSync(scratch, { recursive: true, force: true });
  };
  return { service: { ...service, stop }, scratch, standIn };
}

/**
 * A download, asked for again while the service answers 202 (a format it converts on first request);
 * returns the first answer too, so a test can see that conversion was announced.
 */
export async function downloadWhenMade(get: () => supertest.Test): Promise<{ first: supertest.Response; response: supertest.Response }> {
  const first = await get();
  let response = first;
  for (let attempt = 0; response.status === 202 && attempt < 600; attempt++) {
    await sleep(250);
    response = await get();
  }
  return { first, response };
}
