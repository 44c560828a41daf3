import { CANCELLED_REASON, type TrainingJob } from '../../common/queue-facade.js';
import type { RedisClient } from '../../common/redis-connection.js';
import type { redisKeys } from '../../common/redis-keys.js';
import { LOCAL_OWNER } from '../../schemas/auth.js';
import { isTrainingSpec } from '../../schemas/job-spec.js';
import {
  FINISHED_STATES,
  HAS_MODEL_STATES,
  progressAtStart,
  SKIPPED_FILES_IN_STATUS,
  type JobState,
  type JobStatus,
  type Progress,
} from '../../schemas/job-status.js';
import { TrainingPayload, TrainingResult, WorkerProgress } from '../../schemas/queue.js';

/** A job's state from BullMQ's, the failure reason, the cancel flag and whether a live worker holds it. */
export function stateOf(
  bullState: string,
  failedReason: string | undefined,
  cancelFlag: boolean,
  workerAlive = true,
  stoppedEarly = false,
): JobState {
  if (bullState === 'completed') return stoppedEarly ? 'stopped_early' : 'completed';
  if (bullState === 'failed') return failedReason === CANCELLED_REASON ? 'cancelled' : 'failed';
  if (bullState === 'active') return workerAlive ? 'running' : 'stalled';
  return cancelFlag ? 'cancelled' : 'queued';
}

/**
 * Progress that agrees with the state: `queued` only while queued (a retried job waits again),
 * `starting` while running before the worker's first report, `done` once completed, `cancelled` once
 * cancelled; otherwise the worker's last report, so a failed job shows where it stopped.
 */
export function progressOf(state: JobState, reported: WorkerProgress | null, totalEpochs: number): Progress {
  const initial = progressAtStart('queued', totalEpochs);
  const { phase, epoch, step, totalSteps, percent, etaSeconds, imagesPerSecond, download } = reported ?? initial;
  const running = state === 'running';
  const last: Progress = {
    phase,
    epoch,
    totalEpochs: reported?.totalEpochs ?? totalEpochs,
    step,
    totalSteps,
    percent,
    etaSeconds: running || state === 'stalled' ? etaSeconds : null,
    imagesPerSecond: running ? imagesPerSecond : null,
    download: running ? download : null,
  };
  if (state === 'queued') return { ...last, phase: 'queued', etaSeconds: null };
  if (state === 'cancelled') return { ...last, phase: 'cancelled' };
  if (HAS_MODEL_STATES.includes(state)) return { ...last, phase: 'done', percent: 100, etaSeconds: 0 };
  if (state === 'running' && !reported) return { ...initial, phase: 'starting' };
  return last;
}

/** The spec of a stored payload as today's schema reads it, or as stored when it no longer parses. */
function storedSpec(data: unknown): { spec: JobStatus['spec']; mode: string; totalEpochs: number } {
  const payload = TrainingPayload.safeParse(data);
  if (payload.success) {
    const { spec } = payload.data;
    return { spec, mode: spec.mode, totalEpochs: isTrainingSpec(spec) ? spec.epochs : 0 };
  }
  const raw = (data as { spec?: unknown } | null)?.spec;
  const spec = raw && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
  return { spec, mode: typeof spec.mode === 'string' ? spec.mode : 'unknown', totalEpochs: 0 };
}

/** Whose job this is: jobs from before owners existed belong to the single user. */
export const ownerOf = (job: TrainingJob): string => {
  const owner = (job.data as { owner?: unknown } | null)?.owner;
  return typeof owner === 'string' ? owner : LOCAL_OWNER;
};

/** Where a job's status comes from: BullMQ's record, and our cancel flag and heartbeat keys. */
export interface StatusSources {
  redis: RedisClient;
  keys: ReturnType<typeof redisKeys>;
  queue: { getJob(id: string): Promise<TrainingJob | undefined> };
  heartbeatMs: number;
}

/** A job's status as the API answers it, from BullMQ's record, the cancel flag and the worker's heartbeat. */
export async function describeJob(
  current: TrainingJob,
  { redis, keys, queue, heartbeatMs }: StatusSources,
  knownState?: string,
): Promise<JobStatus> {
  const id = current.id ?? '';
  const [bullState, cancelFlag, heartbeat] = await Promise.all([
    knownState ?? current.getState(),
    redis.exists(keys.cancel(id)),
    redis.exists(keys.jobHeartbeat(id)),
  ]);
  // The job may have started or finished between reading its data and its state: read the data again (a job
  // read while waiting has no processedOn, and without it a just-started job would show as stalled).
  const moved =
    ((bullState === 'completed' || bullState === 'failed') && !current.finishedOn) || (bullState === 'active' && !current.processedOn);
  const job = moved ? ((await queue.getJob(id)) ?? current) : current;
  const { spec, mode, totalEpochs } = storedSpec(job.data);
  // A job just taken may not have its first heartbeat yet.
  const justStarted = Date.now() - (job.processedOn ?? 0) < heartbeatMs * 3;
  const returned = TrainingResult.safeParse(job.returnvalue);
  const stoppedEarly = returned.success && returned.data.stoppedEarlyAfterEpoch !== null;
  const state = stateOf(bullState, job.failedReason, cancelFlag === 1, heartbeat === 1 || justStarted, stoppedEarly);
  const reportedProgress = WorkerProgress.safeParse(job.progress);
  const reported = reportedProgress.success ? reportedProgress.data : null;
  const base = `/v1/jobs/${id}`;
  return {
    id,
    owner: ownerOf(job),
    state,
    mode,
    spec,
    progress: progressOf(state, reported, totalEpochs),
    latestMetrics: reported?.latestMetrics ?? null,
    backend: reported?.backend ?? null,
    skippedFiles: (reported?.skippedFiles ?? []).slice(0, SKIPPED_FILES_IN_STATUS),
    skippedFileCount: reported?.skippedFileCount ?? 0,
    dataset: spec.dataset ? { digest: reported?.datasetDigest ?? null } : null,
    cancelRequested: cancelFlag === 1,
    attempts: job.attemptsMade,
    createdAt: new Date(job.timestamp).toISOString(),
    startedAt: job.processedOn ? new Date(job.processedOn).toISOString() : null,
    finishedAt: job.finishedOn && FINISHED_STATES.includes(state) ? new Date(job.finishedOn).toISOString() : null,
    failure: state === 'failed' ? { reason: job.failedReason } : null,
    result:
      HAS_MODEL_STATES.includes(state) && returned.success
        ? {
            epochsCompleted: returned.data.epochsCompleted,
            resumedFromEpoch: returned.data.resumedFromEpoch,
            validationAccuracy: returned.data.validationAccuracy,
            stoppedEarlyAfterEpoch: returned.data.stoppedEarlyAfterEpoch,
          }
        : null,
    links: {
      self: base,
      summary: `${base}/summary`,
      metrics: `${base}/metrics`,
      preflight: `${base}/preflight`,
      checkpoint: `${base}/checkpoint`,
    },
  };
}
