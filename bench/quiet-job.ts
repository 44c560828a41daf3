import { openArtifactStore } from '../common/open-artifact-store.js';
import { JobArtifacts } from '../common/job-artifacts.js';
import type { Config } from '../schemas/config.js';
import type { JobSpec } from '../schemas/job-spec.js';
import type { BackendReport, Precision } from '../schemas/model.js';
import { runJob } from '../workers/training/run-job.js';
import { variantSourceOf } from '../engine/model/weight-variants.js';
import { Redis } from 'ioredis';

/** A job through the worker's runJob, in this process, with nothing reported or logged: its artifacts, and the precision it ran in. */
export async function runQuietJob(
  jobId: string,
  spec: JobSpec,
  config: Config,
  backend: BackendReport,
): Promise<{ artifacts: JobArtifacts; precision: Precision | null }> {
  const store = await openArtifactStore(config);
  const artifacts = new JobArtifacts(store, jobId);
  let precision: Precision | null = null;
  await runJob({
    jobId,
    spec,
    config,
    artifacts,
    store,
    backend,
    report: async (progress) => {
      precision = progress.backend?.precision ?? precision;
    },
    cancelRequested: async () => false,
    handBackRequested: () => false,
    measureArtifacts: async () => undefined,
    ensureArtifactRoom: async () => undefined,
    reportToSweep: null,
    sweepObjective: null,
    // Bench jobs start from random or already stored weights: Redis (the fetch's lock) is never asked.
    weights: await variantSourceOf(config, store, new Redis(config.REDIS_URL, { lazyConnect: true })),
    log: () => undefined,
  });
  return { artifacts, precision };
}
