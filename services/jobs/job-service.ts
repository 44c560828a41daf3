import { createHash, randomUUID } from 'node:crypto';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../../schemas/config.js';
import { JobSpec, isTrainingSpec } from '../../schemas/job-spec.js';
import type { JobState, JobStatus, Progress, WorkerProgress } from '../../schemas/job-status.js';
import { resolveDatasetOrProblem } from '../datasets/resolve.js';
import { jobKeys, type ArtifactStore } from '../artifacts/artifact-store.js';
import { HttpProblem } from '../api/problem.js';
import { CANCELLED_REASON, QueueName, redisKeys, type Queues, type TrainingJob } from '../queue/queues.js';

const CANCEL_FLAG_TTL_SECONDS = 60 * 24 * 3600;
const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;

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

/** Submits, describes, lists and cancels jobs: BullMQ for queue state, the artifact store for results. */
export class JobService {
  private readonly keys;

  constructor(
    private readonly queues: Queues,
    private readonly redis: Redis,
    private readonly store: ArtifactStore,
    private readonly config: Config,
  ) {
    this.keys = redisKeys(config.QUEUE_PREFIX);
  }

  private get queue() {
    return this.queues.get(QueueName.Training);
  }

  async submit(spec: JobSpec, idempotencyKey?: string): Promise<Submission> {
    if (spec.dataset.type !== 'synthetic') await resolveDatasetOrProblem(spec.dataset, this.config.DATA_DIR);
    let jobId: string = randomUUID();
    if (idempotencyKey) {
      const fingerprint = createHash('sha256').update(JSON.stringify(spec)).digest('hex');
      const key = this.keys.idempotency(idempotencyKey);
      const claimed = await this.redis.set(key, `${jobId} ${fingerprint}`, 'EX', IDEMPOTENCY_TTL_SECONDS, 'NX');
      if (claimed !== 'OK') {
        const [existingId, existingFingerprint] = (await this.redis.get(key))?.split(' ') ?? [];
        if (existingFingerprint !== fingerprint) {
          throw new HttpProblem(422, 'Idempotency key reused', 'this Idempotency-Key was used for a different job spec in the last 24 hours');
        }
        const existing = await this.status(existingId);
        if (existing) return { status: existing, created: false };
        jobId = existingId;
      }
    }
    await this.store.write(jobKeys(jobId).spec, JSON.stringify(spec));
    const job = await this.queues.enqueue(QueueName.Training, jobId, { spec, submittedAt: new Date().toISOString() });
    return { status: await this.describe(job, 'waiting'), created: true };
  }

  async find(jobId: string): Promise<TrainingJob | undefined> {
    return (await this.queue.getJob(jobId)) as TrainingJob | undefined;
  }

  async status(jobId: string): Promise<JobStatus | null> {
    const job = await this.find(jobId);
    return job ? this.describe(job) : null;
  }

  async describe(current: TrainingJob, knownState?: string): Promise<JobStatus> {
    const [bullState, cancelFlag] = await Promise.all([
      knownState ?? current.getState(),
      this.redis.exists(this.keys.cancel(current.id!)),
    ]);
    // The job may have finished between reading its data and its state: read the data again.
    const job = (bullState === 'completed' || bullState === 'failed') && !current.finishedOn ? ((await this.find(current.id!)) ?? current) : current;
    // A payload written by an older release may not parse today: show it as stored rather than fail.
    const parsed = JobSpec.safeParse(job.data.spec);
    const spec = parsed.success ? parsed.data : job.data.spec;
    const state = stateOf(bullState, job, cancelFlag === 1);
    const reported = typeof job.progress === 'object' ? (job.progress as WorkerProgress) : null;
    const totalEpochs = isTrainingSpec(spec) ? spec.epochs : 0;
    const progress: Progress = reported
      ? { phase: reported.phase, epoch: reported.epoch, totalEpochs: reported.totalEpochs, step: reported.step, totalSteps: reported.totalSteps, percent: reported.percent, etaSeconds: reported.etaSeconds }
      : { phase: 'queued', epoch: 0, totalEpochs, step: 0, totalSteps: 0, percent: 0, etaSeconds: null };
    if (state === 'completed') Object.assign(progress, { phase: 'done', percent: 100, etaSeconds: 0 });
    const base = `/v1/jobs/${job.id}`;
    return {
      id: job.id!,
      state,
      mode: spec.mode,
      spec,
      progress,
      latestMetrics: reported?.latestMetrics ?? null,
      backend: reported?.backend ?? null,
      skippedFiles: reported?.skippedFiles ?? [],
      cancelRequested: cancelFlag === 1,
      attempts: job.attemptsMade,
      createdAt: new Date(job.timestamp).toISOString(),
      startedAt: job.processedOn ? new Date(job.processedOn).toISOString() : null,
      finishedAt: job.finishedOn && (state === 'completed' || state === 'failed' || state === 'cancelled') ? new Date(job.finishedOn).toISOString() : null,
      failure: state === 'failed' ? { reason: job.failedReason } : null,
      result: state === 'completed' && job.returnvalue
        ? { epochsCompleted: job.returnvalue.epochsCompleted, resumedFromEpoch: job.returnvalue.resumedFromEpoch, validationAccuracy: job.returnvalue.validationAccuracy }
        : null,
      links: { self: base, summary: `${base}/summary`, metrics: `${base}/metrics`, checkpoint: `${base}/checkpoint` },
    };
  }

  async list(filter: { state?: JobState; limit: number; offset: number }) {
    const types = filter.state ? BULL_TYPES[filter.state] : [...new Set(Object.values(BULL_TYPES).flat())];
    const jobs = ((await this.queue.getJobs(types as never[])) as TrainingJob[]).filter(Boolean);
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
   * at every step, and that keeps a queued job from ever training.
   */
  async cancel(jobId: string): Promise<JobStatus | null> {
    const job = await this.find(jobId);
    if (!job) return null;
    const before = await this.describe(job);
    if (before.state === 'completed' || before.state === 'failed' || before.state === 'cancelled') {
      throw new HttpProblem(409, 'Conflict', `job ${jobId} is already ${before.state}`, { state: before.state });
    }
    await this.redis.set(this.keys.cancel(jobId), new Date().toISOString(), 'EX', CANCEL_FLAG_TTL_SECONDS);
    return this.describe(job);
  }
}

function stateOf(bullState: string, job: Job, cancelFlag: boolean): JobState {
  if (bullState === 'completed') return 'completed';
  if (bullState === 'failed') return job.failedReason === CANCELLED_REASON ? 'cancelled' : 'failed';
  if (bullState === 'active') return 'running';
  return cancelFlag ? 'cancelled' : 'queued';
}
