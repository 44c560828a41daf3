import { createHash, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { ArtifactStore } from '../../common/artifact-store.js';
import { ConflictError, IdempotencyKeyReusedError, NotFoundError } from '../../common/errors.js';
import { JobArtifacts } from '../../common/job-artifacts.js';
import { CANCELLED_REASON, QueueName, redisKeys, whenReady, type Queues, type TrainingJob } from '../../common/queues.js';
import type { PreflightReport } from '../../schemas/dataset.js';
import { isTrainingSpec, type JobSpec } from '../../schemas/job-spec.js';
import { FINISHED_STATES, SKIPPED_FILES_IN_STATUS, type JobState, type JobStatus, type Progress } from '../../schemas/job-status.js';
import { emptyMetrics, type Metrics } from '../../schemas/metrics.js';
import type { ModelSummary } from '../../schemas/model.js';
import { TrainingPayload, TrainingResult, WorkerProgress } from '../../schemas/queue.js';
import { checkDataset } from '../datasets/check-dataset.js';
import { checkpointDownload, type CheckpointFormat, type CheckpointSelector, type Download } from './downloads.js';

/** How long a request waits for a (re)connecting Redis before it is answered 503. */
const REDIS_WAIT_MS = 1000;
const CANCEL_FLAG_TTL_SECONDS = 60 * 24 * 3600;
const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;
const isUuid = (id: string) => z.uuid().safeParse(id).success;

const QUEUED_STATES = ['waiting', 'delayed', 'prioritized', 'waiting-children', 'paused'] as const;
const BULL_TYPES: Record<JobState, string[]> = {
  queued: [...QUEUED_STATES],
  running: ['active'],
  completed: ['completed'],
  failed: ['failed'],
  cancelled: ['failed', ...QUEUED_STATES],
};

export interface Submission {
  status: JobStatus;
  created: boolean;
}

export interface JobListing {
  items: JobStatus[];
  total: number;
  limit: number;
  offset: number;
}

/** A job's state from BullMQ's, the failure reason and the cancel flag. */
export function stateOf(bullState: string, failedReason: string | undefined, cancelFlag: boolean): JobState {
  if (bullState === 'completed') return 'completed';
  if (bullState === 'failed') return failedReason === CANCELLED_REASON ? 'cancelled' : 'failed';
  if (bullState === 'active') return 'running';
  return cancelFlag ? 'cancelled' : 'queued';
}

/**
 * Progress that agrees with the state: `queued` only while queued (a retried job waits again),
 * `starting` while running before the worker's first report, `done` once completed; otherwise the
 * worker's last report, so a failed or cancelled job shows where it stopped.
 */
export function progressOf(state: JobState, reported: WorkerProgress | null, totalEpochs: number): Progress {
  const initial: Progress = { phase: 'queued', epoch: 0, totalEpochs, step: 0, totalSteps: 0, percent: 0, etaSeconds: null };
  const { phase, epoch, step, totalSteps, percent, etaSeconds } = reported ?? initial;
  const last: Progress = { phase, epoch, totalEpochs: reported?.totalEpochs ?? totalEpochs, step, totalSteps, percent, etaSeconds };
  if (state === 'queued') return { ...last, phase: 'queued', etaSeconds: null };
  if (state === 'completed') return { ...last, phase: 'done', percent: 100, etaSeconds: 0 };
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

/** Submits, describes, lists and cancels jobs, and reads their results: BullMQ for queue state, the artifact store for results. */
export class JobService {
  private readonly keys;

  constructor(
    private readonly queues: Queues,
    private readonly redis: Redis,
    private readonly store: ArtifactStore,
    private readonly options: { prefix: string; dataDir: string },
  ) {
    this.keys = redisKeys(options.prefix);
  }

  private get queue() {
    return this.queues.get(QueueName.Training);
  }

  async submit(spec: JobSpec, idempotencyKey?: string): Promise<Submission> {
    await whenReady(this.redis, REDIS_WAIT_MS);
    if (spec.dataset && spec.dataset.type !== 'synthetic') await checkDataset(spec.dataset, this.options.dataDir);
    let jobId: string = randomUUID();
    if (idempotencyKey) {
      const fingerprint = createHash('sha256').update(JSON.stringify(spec)).digest('hex');
      const key = this.keys.idempotency(idempotencyKey);
      const claimed = await this.redis.set(key, `${jobId} ${fingerprint}`, 'EX', IDEMPOTENCY_TTL_SECONDS, 'NX');
      if (claimed !== 'OK') {
        const [existingId, existingFingerprint] = (await this.redis.get(key))?.split(' ') ?? [];
        if (existingFingerprint !== fingerprint) {
          throw new IdempotencyKeyReusedError('this Idempotency-Key was used for a different job spec in the last 24 hours');
        }
        const existing = await this.status(existingId);
        if (existing) return { status: existing, created: false };
        jobId = existingId;
      }
    }
    const job = await this.queues.enqueue(QueueName.Training, jobId, { spec, submittedAt: new Date().toISOString() });
    return { status: await this.describe(job, 'waiting'), created: true };
  }

  private async find(jobId: string): Promise<TrainingJob | null> {
    if (!isUuid(jobId)) return null;
    await whenReady(this.redis, REDIS_WAIT_MS);
    return (await this.queue.getJob(jobId)) ?? null;
  }

  private async require(jobId: string): Promise<TrainingJob> {
    const job = await this.find(jobId);
    if (!job) throw new NotFoundError(`no job with id ${jobId}`);
    return job;
  }

  async status(jobId: string): Promise<JobStatus | null> {
    const job = await this.find(jobId);
    return job ? this.describe(job) : null;
  }

  async requireStatus(jobId: string): Promise<JobStatus> {
    return this.describe(await this.require(jobId));
  }

  private async describe(current: TrainingJob, knownState?: string): Promise<JobStatus> {
    const id = current.id ?? '';
    const [bullState, cancelFlag] = await Promise.all([knownState ?? current.getState(), this.redis.exists(this.keys.cancel(id))]);
    // The job may have finished between reading its data and its state: read the data again.
    const job = (bullState === 'completed' || bullState === 'failed') && !current.finishedOn ? ((await this.find(id)) ?? current) : current;
    const { spec, mode, totalEpochs } = storedSpec(job.data);
    const state = stateOf(bullState, job.failedReason, cancelFlag === 1);
    const reportedProgress = WorkerProgress.safeParse(job.progress);
    const reported = reportedProgress.success ? reportedProgress.data : null;
    const returned = TrainingResult.safeParse(job.returnvalue);
    const base = `/v1/jobs/${id}`;
    return {
      id,
      state,
      mode,
      spec,
      progress: progressOf(state, reported, totalEpochs),
      latestMetrics: reported?.latestMetrics ?? null,
      backend: reported?.backend ?? null,
      skippedFiles: (reported?.skippedFiles ?? []).slice(0, SKIPPED_FILES_IN_STATUS),
      skippedFileCount: reported?.skippedFileCount ?? 0,
      cancelRequested: cancelFlag === 1,
      attempts: job.attemptsMade,
      createdAt: new Date(job.timestamp).toISOString(),
      startedAt: job.processedOn ? new Date(job.processedOn).toISOString() : null,
      finishedAt: job.finishedOn && FINISHED_STATES.includes(state) ? new Date(job.finishedOn).toISOString() : null,
      failure: state === 'failed' ? { reason: job.failedReason } : null,
      result:
        state === 'completed' && returned.success
          ? {
              epochsCompleted: returned.data.epochsCompleted,
              resumedFromEpoch: returned.data.resumedFromEpoch,
              validationAccuracy: returned.data.validationAccuracy,
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

  async list(filter: { state?: JobState; limit: number; offset: number }): Promise<JobListing> {
    await whenReady(this.redis, REDIS_WAIT_MS);
    const types = filter.state ? BULL_TYPES[filter.state] : [...new Set(Object.values(BULL_TYPES).flat())];
    const jobs = (await this.queue.getJobs(types as Parameters<typeof this.queue.getJobs>[0])).filter(Boolean);
    const unique = [...new Map(jobs.map((job) => [job.id, job])).values()].sort((a, b) => b.timestamp - a.timestamp);
    const statuses = (await Promise.all(unique.map((job) => this.describe(job)))).filter((s) => !filter.state || s.state === filter.state);
    return {
      items: statuses.slice(filter.offset, filter.offset + filter.limit),
      total: statuses.length,
      limit: filter.limit,
      offset: filter.offset,
    };
  }

  /**
   * BullMQ cannot stop an active job from another process: set a durable flag that the worker checks
   * before every step, and that keeps a queued job from ever training.
   */
  async cancel(jobId: string): Promise<JobStatus> {
    const job = await this.require(jobId);
    const before = await this.describe(job);
    if (FINISHED_STATES.includes(before.state)) throw new ConflictError(`job ${jobId} is already ${before.state}`, { state: before.state });
    await this.redis.set(this.keys.cancel(jobId), new Date().toISOString(), 'EX', CANCEL_FLAG_TTL_SECONDS);
    return this.describe(job);
  }

  private async artifacts(jobId: string): Promise<JobArtifacts> {
    await this.require(jobId);
    return new JobArtifacts(this.store, jobId);
  }

  async summary(jobId: string): Promise<ModelSummary> {
    const summary = await (await this.artifacts(jobId)).readSummary();
    if (!summary) throw new ConflictError('the summary is written when the job starts; this job has not started yet');
    return summary;
  }

  /** Empty until the first epoch (or the evaluation) ends. */
  async metrics(jobId: string): Promise<Metrics> {
    return (await (await this.artifacts(jobId)).readMetrics()) ?? emptyMetrics();
  }

  async preflight(jobId: string): Promise<PreflightReport> {
    const report = await (await this.artifacts(jobId)).readPreflight();
    if (!report)
      throw new ConflictError('the preflight report is written when the job loads its dataset; this job has not yet (or has no dataset)');
    return report;
  }

  async checkpoint(jobId: string, selector: CheckpointSelector, format: CheckpointFormat): Promise<Download> {
    return checkpointDownload(await this.artifacts(jobId), selector, format);
  }

  /** The status of a job whose final model can serve predictions (409 until it completes). */
  async completedModel(jobId: string): Promise<JobStatus> {
    const status = await this.requireStatus(jobId);
    if (status.state !== 'completed') {
      throw new ConflictError(`predictions need the final model of a completed job; this job is ${status.state}`, { state: status.state });
    }
    return status;
  }
}
