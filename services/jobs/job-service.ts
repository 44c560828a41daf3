import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { ArtifactStore } from '../../common/artifact-store.js';
import type { CachePolicy } from '../../common/cache-eviction.js';
import { ConflictError, IdempotencyKeyReusedError, NotFoundError, QuotaExceededError, UnavailableError } from '../../common/errors.js';
import { WeightsStore } from '../../common/weights-store.js';
import { JobArtifacts, type CheckpointSelector } from '../../common/job-artifacts.js';
import type { WeightsCatalog } from '../../common/weights-catalog.js';
import { QueueName, type Queues, type TrainingJob } from '../../common/queue-facade.js';
import { redisKeys } from '../../common/redis-keys.js';
import { whenReady, type RedisClient } from '../../common/redis-connection.js';
import type { Caller } from '../../schemas/auth.js';
import type { PreflightReport } from '../../schemas/dataset.js';
import type { JobSpec } from '../../schemas/job-spec.js';
import { FINISHED_STATES, HAS_MODEL_STATES, type JobState, type JobStatus } from '../../schemas/job-status.js';
import { emptyMetrics, type Metrics } from '../../schemas/metrics.js';
import type { ModelSummary } from '../../schemas/model.js';
import { TrainingPayload } from '../../schemas/queue.js';
import type { TrialLink } from '../../schemas/sweep.js';
import { checkDataset } from '../datasets/check-dataset.js';
import { ArchiveCache } from './archive-cache.js';
import { ModelAliasStore } from './model-aliases.js';
import { checkStartWeights } from './start-weights.js';
import { JobIndex } from './job-index.js';
import type { FilteredIndex, IndexScope, LabelFilter } from '../../common/label-index.js';
import { describeJob, ownerOf } from './job-status.js';
import { checkpointDownload, type Converting, type Download, type DownloadKind, type ModelExporter } from './checkpoint-downloads.js';
import { isUuid } from '../../schemas/ids.js';

/** How long a request waits for a (re)connecting Redis before it is answered 503. */
const REDIS_WAIT_MS = 1000;
const CANCEL_FLAG_TTL_SECONDS = 60 * 24 * 3600;
const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;
/** A state filter looks at this many of the caller's newest jobs, so a listing stays bounded. */
export const LIST_STATE_SCAN_LIMIT = 2000;
const LIST_BATCH = 100;
/** The retention sweep reads expired index entries this many at a time, at most this many batches an hour (240,000 jobs a day). */
const SWEEP_BATCH = 500;
const SWEEP_BATCHES_PER_RUN = 20;

export interface Submission {
  status: JobStatus;
  created: boolean;
}

export interface JobFilter extends LabelFilter {
  state?: JobState;
  limit: number;
  offset: number;
}

export interface JobListing {
  items: JobStatus[];
  total: number;
  limit: number;
  offset: number;
}

/** Submits, describes, lists and cancels jobs, and reads their results: BullMQ for queue state, the artifact store for results. */
export class JobService {
  private readonly keys;
  private readonly archives: ArchiveCache;
  private readonly index: JobIndex;
  /** Each owner's model aliases: a job an alias points at cannot be purged. */
  readonly aliases: ModelAliasStore;

  constructor(
    private readonly queues: Queues,
    private readonly redis: RedisClient,
    private readonly store: ArtifactStore,
    private readonly catalog: WeightsCatalog,
    private readonly options: {
      prefix: string;
      dataDir: string;
      quotaOpenJobs: number;
      quotaArtifactBytes: number;
      downloadCache: CachePolicy;
      maxWaiting: number;
      retentionMs: number;
      heartbeatMs: number;
    },
  ) {
    this.keys = redisKeys(options.prefix);
    this.archives = new ArchiveCache(redis, store, options.prefix, options.downloadCache);
    this.index = new JobIndex(redis, queues, options.prefix);
    this.aliases = new ModelAliasStore(redis, options.prefix);
  }

  private get queue() {
    return this.queues.get(QueueName.Training);
  }

  async submit(caller: Caller, spec: JobSpec, idempotencyKey?: string): Promise<Submission> {
    await whenReady(this.redis, REDIS_WAIT_MS);
    await this.checkReferences(caller, spec);
    let jobId: string = randomUUID();
    if (idempotencyKey) {
      const fingerprint = createHash('sha256').update(JSON.stringify(spec)).digest('hex');
      const key = this.keys.idempotency(caller.owner, idempotencyKey);
      const claimed = await this.redis.set(key, `${jobId} ${fingerprint}`, 'EX', IDEMPOTENCY_TTL_SECONDS, 'NX');
      if (claimed !== 'OK') {
        const [existingId, existingFingerprint] = (await this.redis.get(key))?.split(' ') ?? [];
        if (existingFingerprint !== fingerprint) {
          throw new IdempotencyKeyReusedError('this Idempotency-Key was used for a different job spec in the last 24 hours');
        }
        const existing = await this.status(caller, existingId);
        if (existing) return { status: existing, created: false };
        jobId = existingId;
      }
    }
    return { status: await this.enqueue(caller, jobId, spec), created: true };
  }

  /**
   * A sweep's trial, under the id the sweep chose for it: enqueued once however often this is called
   * (BullMQ keeps the first job of an id), within the owner's quotas like any job.
   */
  async submitTrial(caller: Caller, jobId: string, spec: JobSpec, trial: TrialLink): Promise<JobStatus> {
    await whenReady(this.redis, REDIS_WAIT_MS);
    const existing = await this.queue.getJob(jobId);
    if (existing) return this.describe(existing);
    await this.checkReferences(caller, spec);
    return this.enqueue(caller, jobId, spec, trial);
  }

  private async enqueue(caller: Caller, jobId: string, spec: JobSpec, trial?: TrialLink): Promise<JobStatus> {
    await this.admit(caller, jobId, spec);
    const job = await this.queues.enqueue(QueueName.Training, jobId, {
      spec,
      owner: caller.owner,
      submittedAt: new Date().toISOString(),
      artifactQuotaBytes: caller.admin ? null : this.options.quotaArtifactBytes,
      ...(trial ? { trial } : {}),
    });
    return this.describe(job, 'waiting');
  }

  /**
   * Refuses a job past the queue's cap (503) or the owner's quota of open jobs (429). The new job is
   * counted after it is indexed, so concurrent submissions cannot both slip under the quota.
   */
  private async admit(caller: Caller, jobId: string, spec: JobSpec): Promise<void> {
    const counts = await this.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'paused');
    const waiting = Object.values(counts).reduce((sum, n) => sum + n, 0);
    if (waiting >= this.options.maxWaiting) {
      throw new UnavailableError(`the queue holds ${waiting} waiting jobs, its limit; retry later`);
    }
    if (!caller.admin) await this.checkArtifactQuota(caller.owner);
    await this.index.add(caller.owner, jobId, spec);
    if (caller.admin) return;
    const open = await this.index.openOf(caller.owner);
    if (open.length > this.options.quotaOpenJobs) {
      await this.index.remove(jobId, caller.owner, spec);
      throw new QuotaExceededError(
        `${open.length - 1} of your jobs are queued or running, your quota; submit again when one finishes or cancel one`,
        { quota: 'openJobs', limit: this.options.quotaOpenJobs },
      );
    }
  }

  /** What a spec names outside itself must exist and be the caller's: its dataset and its start weights. */
  private async checkReferences(caller: Caller, spec: JobSpec): Promise<void> {
    if (spec.dataset && spec.dataset.type !== 'synthetic')
      await checkDataset(spec.dataset, { dataDir: this.options.dataDir, store: this.store }, caller);
    await checkStartWeights(spec.weights, this.catalog, this.store, (job) => this.completedModel(caller, job));
  }

  /** Refuses new jobs (429) while the owner's jobs keep their quota of models and checkpoints or more. */
  private async checkArtifactQuota(owner: string): Promise<void> {
    const kept = await this.index.keptBytes(owner);
    if (kept < this.options.quotaArtifactBytes) return;
    throw new QuotaExceededError(
      `your jobs keep ${kept} bytes of models and checkpoints and your quota is ${this.options.quotaArtifactBytes}; ` +
        'purge finished jobs you no longer need (DELETE /v1/jobs/{id}?purge=true), then submit again',
      { quota: 'artifactBytes', limit: this.options.quotaArtifactBytes },
    );
  }

  /** The job if it exists and the caller may see it; another owner's job does not exist for them. */
  private async find(caller: Caller, jobId: string): Promise<TrainingJob | null> {
    if (!isUuid(jobId)) return null;
    await whenReady(this.redis, REDIS_WAIT_MS);
    const job = await this.queue.getJob(jobId);
    if (!job || (!caller.admin && ownerOf(job) !== caller.owner)) return null;
    return job;
  }

  private async require(caller: Caller, jobId: string): Promise<TrainingJob> {
    const job = await this.find(caller, jobId);
    if (!job) throw new NotFoundError(`no job with id ${jobId}`);
    return job;
  }

  async status(caller: Caller, jobId: string): Promise<JobStatus | null> {
    const job = await this.find(caller, jobId);
    return job ? this.describe(job) : null;
  }

  async requireStatus(caller: Caller, jobId: string): Promise<JobStatus> {
    return this.describe(await this.require(caller, jobId));
  }

  private describe(job: TrainingJob, knownState?: string): Promise<JobStatus> {
    return describeJob(job, { redis: this.redis, keys: this.keys, queue: this.queue, heartbeatMs: this.options.heartbeatMs }, knownState);
  }

  /**
   * Pages through the caller's index (every job's for the admin), newest first, in Redis: by name,
   * tag and mode, the index of each (intersected when several), so only matching jobs are read. With
   * a state filter it reads the newest LIST_STATE_SCAN_LIMIT of those at most, and `total` counts matches among them.
   */
  async list(caller: Caller, filter: JobFilter): Promise<JobListing> {
    await whenReady(this.redis, REDIS_WAIT_MS);
    const scope: IndexScope = caller.admin ? 'everyone' : { owner: caller.owner };
    const index = await this.index.filtered(scope, filter);
    const page = { limit: filter.limit, offset: filter.offset };
    if (!filter.state) {
      const [ids, total] = await Promise.all([index.page(filter.offset, filter.offset + filter.limit - 1), index.count()]);
      const items = await this.describeIndexed(scope, index, ids);
      return { items, total: total - (ids.length - items.length), ...page };
    }
    const matches: JobStatus[] = [];
    let total = 0;
    for (let start = 0; start < LIST_STATE_SCAN_LIMIT; start += LIST_BATCH) {
      const ids = await index.page(start, start + LIST_BATCH - 1);
      for (const status of await this.describeIndexed(scope, index, ids)) {
        if (status.state !== filter.state) continue;
        if (total >= filter.offset && matches.length < filter.limit) matches.push(status);
        total++;
      }
      if (ids.length < LIST_BATCH) break;
    }
    return { items: matches, total, ...page };
  }

  /** Statuses of indexed ids in order; ids whose job is gone (retention, a failed enqueue) leave the indexes read. */
  private async describeIndexed(scope: IndexScope, index: FilteredIndex, ids: string[]): Promise<JobStatus[]> {
    const jobs = await Promise.all(ids.map((id) => this.queue.getJob(id)));
    const gone = ids.filter((_, i) => !jobs[i]);
    await Promise.all([this.index.forget(scope, gone), index.forget(gone)]);
    return Promise.all(jobs.filter((job): job is TrainingJob => Boolean(job)).map((job) => this.describe(job)));
  }

  /**
   * BullMQ cannot stop an active job from another process: set a durable flag that the worker checks
   * before every step, and that keeps a queued job from ever training.
   */
  async cancel(caller: Caller, jobId: string): Promise<JobStatus> {
    const job = await this.require(caller, jobId);
    const before = await this.describe(job);
    if (FINISHED_STATES.includes(before.state)) throw new ConflictError(`job ${jobId} is already ${before.state}`, { state: before.state });
    await this.redis.set(this.keys.cancel(jobId), new Date().toISOString(), 'EX', CANCEL_FLAG_TTL_SECONDS);
    return this.describe(job);
  }

  /** Removes a finished job: its artifacts, its queue entry and its index entries (204; 409 while it may still run). */
  async purge(caller: Caller, jobId: string): Promise<void> {
    const job = await this.require(caller, jobId);
    const { state } = await this.describe(job);
    if (!FINISHED_STATES.includes(state)) {
      throw new ConflictError(`job ${jobId} is ${state}: cancel it, then purge it once it has ended`, { state });
    }
    const aliases = await this.aliases.pointingAt(ownerOf(job), jobId);
    if (aliases.length)
      throw new ConflictError(`model alias ${aliases.join(', ')} points at job ${jobId}: point it elsewhere or delete it first`, {
        aliases,
      });
    await this.forget(jobId, job);
  }

  /** Everything of a job: artifacts, queue entry, index entries (`job` is null when BullMQ already dropped it). */
  private async forget(jobId: string, job: TrainingJob | null): Promise<void> {
    const artifacts = new JobArtifacts(this.store, jobId);
    const frozenFrom = await artifacts.readFrozenSource().catch(() => null);
    await artifacts.removeAll();
    if (frozenFrom?.variant) await new WeightsStore(this.store).unpin(frozenFrom.variant, jobId);
    await this.archives.forget(artifacts.root);
    await this.queue.remove(jobId);
    await this.index.remove(jobId, job ? ownerOf(job) : null, job ? TrainingPayload.safeParse(job.data).data?.spec : undefined);
  }

  /**
   * Removes jobs that ended more than the retention ago (and the artifacts of those BullMQ already
   * dropped), oldest first, at most SWEEP_BATCH per call, and download archives past their cache's
   * age and size. Returns the ids of the jobs removed.
   */
  async sweepExpired(now = Date.now()): Promise<string[]> {
    await whenReady(this.redis, REDIS_WAIT_MS);
    const cutoff = now - this.options.retentionMs;
    const removed: string[] = [];
    // Batch after batch while whole batches go; a job kept (still open, or ended lately) ends the run.
    for (let batch = 0; batch < SWEEP_BATCHES_PER_RUN; batch++) {
      const candidates = await this.index.submittedBefore(cutoff, SWEEP_BATCH);
      const before = removed.length;
      for (const id of candidates) {
        const job = await this.queue.getJob(id);
        if (job) {
          const { state } = await this.describe(job);
          if (!FINISHED_STATES.includes(state) || (job.finishedOn ?? job.timestamp) > cutoff) continue;
        }
        await this.forget(id, job ?? null);
        removed.push(id);
      }
      if (removed.length - before < SWEEP_BATCH) break;
    }
    await this.archives.evict(undefined, now);
    return removed;
  }

  private async artifacts(caller: Caller, jobId: string): Promise<JobArtifacts> {
    await this.require(caller, jobId);
    return new JobArtifacts(this.store, jobId);
  }

  async summary(caller: Caller, jobId: string): Promise<ModelSummary> {
    const summary = await (await this.artifacts(caller, jobId)).readSummary();
    if (!summary) throw new ConflictError('the summary is written when the job starts; this job has not started yet');
    return summary;
  }

  /** Empty until the first epoch (or the evaluation) ends. */
  async metrics(caller: Caller, jobId: string): Promise<Metrics> {
    return (await (await this.artifacts(caller, jobId)).readMetrics()) ?? emptyMetrics();
  }

  /** The thumbnail of the held-out image whose prediction the metrics keep at `index`. */
  async validationImage(caller: Caller, jobId: string, index: number): Promise<Readable> {
    const artifacts = await this.artifacts(caller, jobId);
    const image = artifacts.validationImage(index);
    if (!(await image.stat())) throw new NotFoundError(`the job keeps no validation image ${index}`);
    return image.open();
  }

  async preflight(caller: Caller, jobId: string): Promise<PreflightReport> {
    const report = await (await this.artifacts(caller, jobId)).readPreflight();
    if (!report)
      throw new ConflictError('the preflight report is written when the job loads its dataset; this job has not yet (or has no dataset)');
    return report;
  }

  /** A download of a saved model; a job that ended without the one asked for says how it ended (409) rather than "not yet". */
  async checkpoint(
    caller: Caller,
    jobId: string,
    { selector, kind, exporter }: { selector: CheckpointSelector; kind: DownloadKind; exporter: ModelExporter },
  ): Promise<Download | Converting> {
    const job = await this.require(caller, jobId);
    const artifacts = new JobArtifacts(this.store, jobId);
    return checkpointDownload(artifacts, selector, kind, { archives: this.archives, exporter, caller }).catch(async (error: Error) => {
      if (!(error instanceof NotFoundError)) throw error;
      const { state, failure } = await this.describe(job);
      if (state === 'failed' || state === 'cancelled') {
        const why = state === 'failed' ? `failed: ${failure?.reason}` : 'was cancelled';
        throw new ConflictError(`job ${jobId} ${why}; ${error.message.replace(/^the job has/, 'it has').replace(/ yet$/, '')}`, { state });
      }
      throw error;
    });
  }

  /** Lines `start` to `end` (inclusive) of the job's own log, oldest first, and how many it keeps. */
  async logs(caller: Caller, jobId: string, start: number, end: number): Promise<{ lines: string[]; total: number }> {
    await this.require(caller, jobId);
    const { logs, count } = await this.queue.getJobLogs(jobId, start, end, true);
    return { lines: logs, total: count };
  }

  /** The status of a job whose final model can serve predictions (409 until it completes). */
  async completedModel(caller: Caller, jobId: string): Promise<JobStatus> {
    const status = await this.requireStatus(caller, jobId);
    if (!HAS_MODEL_STATES.includes(status.state)) {
      throw new ConflictError(`predictions need the final model of a completed job; this job is ${status.state}`, { state: status.state });
    }
    return status;
  }

  /** Jobs queued or running on an uploaded dataset: it may not be deleted under them. */
  async openJobsOnDataset(datasetId: string): Promise<string[]> {
    await whenReady(this.redis, REDIS_WAIT_MS);
    return this.index.openOnDataset(datasetId);
  }
}
