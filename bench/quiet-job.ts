import { openArtifactStore } from '../common/open-artifact-store.js';
import { JobArtifacts } from '../common/job-artifacts.js';
import type { Config } from '../schemas/config.js';
import type { JobSpec } from '../schemas/job-spec.js';
import type { BackendReport, Precision } from '../schemas/model.js';
import { runJob } from '../workers/training/run-job.js';

/** A job through the worker's runJob, in this process, with nothing reported or logged: its artifacts, and the precision it ran in. */
export async function runQuietJob(
  jobId: string,
  spec: JobSpec,
  config: Config,
  backend: BackendReport,
): Promise<{ artifacts: JobArtifacts; precision: Precision | null }> {
  const artifacts = new JobArtifacts(await openArtifactStore(config), jobId);
  let precision: Precision | null = null;
  await runJob({
    jobId,
    spec,
    config,
    artifacts,
    backend,
    report: async (progress) => {
      precision = progress.backend?.precision ?? precision;
    },
    cancelRequested: async () => false,
    handBackRequested: () => false,
    measureArtifacts: async () => undefined,
    ensureArtifactRoom: async () => undefined,
    log: () => undefined,
  });
  return { artifacts, precision };
}
