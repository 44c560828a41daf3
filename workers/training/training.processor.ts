// BullMQ sandboxed processor: runs in a child process of the worker, so hours of synchronous tensor
// work never block the worker's event loop from renewing the job lock.
import { UnrecoverableError, type SandboxedJob } from 'bullmq';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { loadConfig, type Config } from '../../schemas/config.js';
import { JobSpec } from '../../schemas/job-spec.js';
import { LocalArtifactStore } from '../../services/artifacts/artifact-store.js';
import { CANCELLED_REASON, redisKeys, type TrainingPayload, type TrainingResult } from '../../services/queue/queues.js';
import { selectBackend, type BackendInfo } from '../engine/backend.js';
import { InvalidJobError, JobCancelledError, runJob } from './run-job.js';

interface Runtime {
  config: Config;
  backend: BackendInfo;
  store: LocalArtifactStore;
  redis: Redis;
}

let runtime: Promise<Runtime> | undefined;

/** Once per child process: the child is reused for the next job. */
function setUp(): Promise<Runtime> {
  runtime ??= (async () => {
    const config = loadConfig();
    const backend = await selectBackend(config.TFJS_BACKEND);
    return { config, backend, store: new LocalArtifactStore(config.ARTIFACTS_DIR), redis: new Redis(config.REDIS_URL, { maxRetriesPerRequest: 3 }) };
  })();
  return runtime;
}

export default async function trainingProcessor(job: SandboxedJob<TrainingPayload, TrainingResult>): Promise<TrainingResult> {
  const { config, backend, store, redis } = await setUp();
  // Payloads outlive deploys: parse again with today's schema.
  const parsed = JobSpec.safeParse(job.data.spec);
  if (!parsed.success) throw new UnrecoverableError(`invalid job spec: ${z.prettifyError(parsed.error)}`);
  const cancelKey = redisKeys(config.QUEUE_PREFIX).cancel(job.id!);
  const cancelRequested = async () => (await redis.exists(cancelKey)) === 1;
  if (await cancelRequested()) throw new UnrecoverableError(CANCELLED_REASON);
  try {
    return await runJob({
      jobId: job.id!,
      spec: parsed.data,
      config,
      store,
      backend,
      report: (progress) => job.updateProgress(progress),
      cancelRequested,
      log: (message) => void job.log(message),
    });
  } catch (error) {
    if (error instanceof JobCancelledError) throw new UnrecoverableError(CANCELLED_REASON);
    if (error instanceof InvalidJobError) throw new UnrecoverableError(error.message);
    throw error;
  }
}
