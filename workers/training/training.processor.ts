// BullMQ sandboxed processor: runs in a child process of the worker, so hours of synchronous tensor
// work never block the worker's event loop from renewing the job lock.
import { UnrecoverableError, WaitingError, type SandboxedJob } from 'bullmq';
import { hostname } from 'node:os';
import { z } from 'zod';
import { type ArtifactStore } from '../../common/artifact-store.js';
import { openArtifactStore } from '../../common/open-artifact-store.js';
import { ArtifactLedger } from '../../common/artifact-ledger.js';
import { isDiskFull } from '../../common/errors.js';
import { JobArtifacts } from '../../common/job-artifacts.js';
import { createLogger, type Logger } from '../../common/logger.js';
import { CANCELLED_REASON } from '../../common/queue-facade.js';
import { redisKeys } from '../../common/redis-keys.js';
import { redisConnection, type RedisClient } from '../../common/redis-connection.js';
import { loadConfig, type Config } from '../../schemas/config.js';
import { TrainingPayload, type TrainingResult } from '../../schemas/queue.js';
import { selectBackend, type BackendInfo } from '../../engine/backend/backend.js';
import { InvalidJobError, JobCancelledError, JobHandedBackError, type JobContext } from './job-context.js';
import { runJob } from './run-job.js';
import { TrialReport } from '../../common/sweep-trials.js';
import { variantSourceOf } from '../../engine/model/weight-variants.js';

interface Runtime {
  config: Config;
  backend: BackendInfo;
  store: ArtifactStore;
  redis: RedisClient;
  logger: Logger;
  weights: JobContext['weights'];
}

// The worker that forked this child is gone (killed, crashed): stop training now. Its job's lock
// lapses and another worker resumes it from the last checkpoint; an orphan would train beside it.
process.on('disconnect', () => process.exit(1));

let runtime: Promise<Runtime> | undefined;

/** Once per child process: the child is reused for the next job. */
function setUp(): Promise<Runtime> {
  runtime ??= (async () => {
    const config = loadConfig();
    const logger = createLogger('processor', config.LOG_LEVEL);
    const { nativeKernelsMissing: _missing, ...backend } = await selectBackend(config.TFJS_BACKEND, {
      nativeKernels: config.RETRAIN_NATIVE_KERNELS,
    });
    // Retries forever like the worker's own connection: a Redis restart pauses the cancel check, not the job.
    const redis = redisConnection(config, 'worker', logger);
    const store = await openArtifactStore(config);
    return { config, backend, store, redis, logger, weights: await variantSourceOf(config, store, redis) };
  })();
  return runtime;
}

/** What the job keeps, recorded for its owner's quota, and the room the quota leaves it before each write. */
function artifactBookkeeping(ledger: ArtifactLedger, artifacts: JobArtifacts, owner: string, quotaBytes: number | null) {
  const { jobId } = artifacts;
  return {
    measureArtifacts: async () => ledger.record(owner, jobId, await artifacts.modelBytes()),
    ensureArtifactRoom: async (bytes: number, what: string) => {
      if (quotaBytes === null) return;
      const others = (await ledger.ownerTotal(owner)) - (await ledger.jobBytes(owner, jobId));
      const kept = others + (await artifacts.modelBytes());
      if (kept + bytes <= quotaBytes) return;
      throw new InvalidJobError(
        `stopped before writing ${what} (${bytes} bytes): your jobs keep ${kept} bytes of models and checkpoints, and your artifact quota ` +
          `(QUOTA_ARTIFACT_BYTES) is ${quotaBytes}; what this job saved before is kept. Purge finished jobs you no longer need, ` +
          'or keep fewer checkpoints (checkpoints.keepEveryN)',
      );
    },
  };
}

/** `signal` aborts when the worker stops: the job saves its epoch so far and goes back to the queue. */
export default async function trainingProcessor(
  job: SandboxedJob<TrainingPayload, TrainingResult>,
  token?: string,
  signal?: AbortSignal,
): Promise<TrainingResult> {
  const { config, backend, store, redis, logger, weights } = await setUp();
  const jobId = job.id ?? '';
  const log = logger.child({ jobId, attempt: job.attemptsMade + 1 });
  // Payloads outlive deploys: parse again with today's schema.
  const payload = TrainingPayload.safeParse(job.data);
  if (!payload.success) throw new UnrecoverableError(`invalid job spec: ${z.prettifyError(payload.error)}`);
  const keys = redisKeys(config.QUEUE_PREFIX);
  const cancelKey = keys.cancel(jobId);
  const artifacts = new JobArtifacts(store, jobId);
  const { owner, artifactQuotaBytes, trial } = payload.data;
  const { measureArtifacts, ensureArtifactRoom } = artifactBookkeeping(
    new ArtifactLedger(redis, config.QUEUE_PREFIX),
    artifacts,
    owner,
    artifactQuotaBytes,
  );
  const cancelRequested = async () => (await redis.exists(cancelKey)) === 1;
  if (await cancelRequested()) throw new UnrecoverableError(CANCELLED_REASON);
  const ctxLog = (message: string, fields?: Record<string, unknown>) => {
    log.info(fields ?? {}, message);
    void job.log(fields ? `${message} ${JSON.stringify(fields)}` : message);
  };
  ctxLog(`attempt ${job.attemptsMade + 1} on ${hostname()} (pid ${process.pid}), backend ${backend.backend}, kernels ${backend.kernels}`);
  try {
    return await runJob({
      jobId,
      spec: payload.data.spec,
      config,
      artifacts,
      store,
      backend,
      report: (progress) => job.updateProgress(progress),
      cancelRequested,
      handBackRequested: () => signal?.aborted === true,
      measureArtifacts,
      ensureArtifactRoom,
      sweepObjective: trial?.objective.metric ?? null,
      reportToSweep: trial ? (history) => new TrialReport(redis, config.QUEUE_PREFIX, trial).epochsEnded(history) : null,
      weights,
      log: ctxLog,
    });
  } catch (error) {
    if (error instanceof JobCancelledError) throw new UnrecoverableError(CANCELLED_REASON);
    if (error instanceof InvalidJobError) throw new UnrecoverableError(error.message);
    // No retry can make room: fail at once, naming what could not be written.
    if (isDiskFull(error)) throw new UnrecoverableError(`the artifact store is full: ${(error as Error).message}`);
    if (error instanceof JobHandedBackError) {
      // Back to waiting without spending an attempt; the worker takes WaitingError as "not failed".
      await job.moveToWait(token);
      log.info(error.message);
      throw new WaitingError();
    }
    throw error;
  } finally {
    // The final model, or what a failed or cancelled job left: counted before the job ends.
    await measureArtifacts().catch((error: Error) => log.warn({ err: error.message }, 'could not record the bytes the job keeps'));
  }
}
