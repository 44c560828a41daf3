import { ArtifactLedger } from '../../common/artifact-ledger.js';
import {
  filteredIndex,
  labelsOf,
  type FilteredIndex,
  type IndexKeys,
  type IndexScope,
  type LabelFilter,
} from '../../common/label-index.js';
import { QueueName, type Queues } from '../../common/queue-facade.js';
import { redisKeys } from '../../common/redis-keys.js';
import { type RedisClient } from '../../common/redis-connection.js';
import type { JobSpec } from '../../schemas/job-spec.js';

/** An indexed id not yet in the queue counts as open this long (the enqueue follows the index). */
const ENQUEUE_GRACE_MS = 60_000;

/**
 * The service's indexes of jobs in Redis, beside BullMQ's own: every job and each owner's by
 * submission time (listings page here, not in memory), each owner's jobs that may still train (the
 * quota), those on each uploaded dataset (it cannot be deleted under them), and the bytes each
 * owner's jobs keep (recorded by their workers). An index may hold ids BullMQ no longer has: readers
 * drop those as they meet them.
 */
export class JobIndex {
  private readonly keys;
  private readonly ledger: ArtifactLedger;

  constructor(
    private readonly redis: RedisClient,
    private readonly queues: Queues,
    prefix: string,
  ) {
    this.keys = redisKeys(prefix);
    this.ledger = new ArtifactLedger(redis, prefix);
  }

  private get queue() {
    return this.queues.get(QueueName.Training);
  }

  private sortedSet(scope: IndexScope): string {
    return scope === 'everyone' ? this.keys.allJobs : this.keys.ownerJobs(scope.owner);
  }

  /**
   * The index a filtered listing pages through: the scope's own, one label's, or the intersection of
   * several (kept a little while, so the pages of one listing agree).
   */
  filtered(scope: IndexScope, filter: LabelFilter): Promise<FilteredIndex> {
    const keys: IndexKeys = { all: (s) => this.sortedSet(s), labelled: (s, label) => this.keys.labelledJobs(s, label) };
    return filteredIndex(this.redis, keys, scope, filter);
  }

  /** Before the job is enqueued: a listing skips (and forgets) an id whose enqueue failed, but never misses a job. */
  async add(owner: string, jobId: string, spec: JobSpec): Promise<void> {
    const now = Date.now();
    const transaction = this.redis
      .multi()
      .zadd(this.keys.allJobs, now, jobId)
      .zadd(this.keys.ownerJobs(owner), now, jobId)
      .zadd(this.keys.openJobs(owner), now, jobId);
    if (spec.dataset?.type === 'upload') transaction.zadd(this.keys.datasetJobs(spec.dataset.id), now, jobId);
    for (const label of labelsOf(spec ?? {})) {
      transaction.zadd(this.keys.labelledJobs('everyone', label), now, jobId).zadd(this.keys.labelledJobs({ owner }, label), now, jobId);
    }
    await transaction.exec();
  }

  /** Undoes `add`, and drops the job's cancel flag and kept bytes; without the owner or spec, what they name is left to lazy cleanup. */
  async remove(jobId: string, owner: string | null, spec: JobSpec | undefined): Promise<void> {
    const transaction = this.redis.multi().zrem(this.keys.allJobs, jobId).del(this.keys.cancel(jobId));
    if (owner) transaction.zrem(this.keys.ownerJobs(owner), jobId).zrem(this.keys.openJobs(owner), jobId);
    if (spec?.dataset?.type === 'upload') transaction.zrem(this.keys.datasetJobs(spec.dataset.id), jobId);
    for (const label of labelsOf(spec ?? {})) {
      transaction.zrem(this.keys.labelledJobs('everyone', label), jobId);
      if (owner) transaction.zrem(this.keys.labelledJobs({ owner }, label), jobId);
    }
    await transaction.exec();
    if (owner) await this.ledger.forget(owner, jobId);
  }

  /** Ids a reader found BullMQ no longer has. */
  async forget(scope: IndexScope, ids: string[]): Promise<void> {
    if (ids.length) await this.redis.zrem(this.sortedSet(scope), ...ids);
  }

  /** The oldest ids submitted before `cutoff`, at most `limit`. */
  submittedBefore(cutoff: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.allJobs, 0, cutoff, 'LIMIT', 0, limit);
  }

  /** The owner's jobs that may still train. */
  openOf(owner: string): Promise<string[]> {
    return this.openIn(this.keys.openJobs(owner));
  }

  /** Jobs queued or running on an uploaded dataset. */
  openOnDataset(datasetId: string): Promise<string[]> {
    return this.openIn(this.keys.datasetJobs(datasetId));
  }

  /** Bytes of models and checkpoints the owner's jobs keep, as their workers last recorded. */
  keptBytes(owner: string): Promise<number> {
    return this.ledger.ownerTotal(owner);
  }

  /**
   * Ids of the jobs in the sorted set `key` (scored by when they were indexed) that may still train;
   * finished and cancelled ones leave it, and so do ids that never reached the queue.
   */
  private async openIn(key: string): Promise<string[]> {
    const entries = await this.redis.zrange(key, 0, -1, 'WITHSCORES');
    const enqueueDeadline = Date.now() - ENQUEUE_GRACE_MS;
    const ids: string[] = [];
    const indexedAt: number[] = [];
    for (let i = 0; i < entries.length; i += 2) {
      ids.push(entries[i]);
      indexedAt.push(Number(entries[i + 1]));
    }
    const open = await Promise.all(
      ids.map(async (id, i) => {
        const [state, cancelled] = await Promise.all([this.queue.getJobState(id), this.redis.exists(this.keys.cancel(id))]);
        if (state === 'unknown') return indexedAt[i] > enqueueDeadline;
        return !['completed', 'failed'].includes(state) && cancelled === 0;
      }),
    );
    const closed = ids.filter((_, i) => !open[i]);
    if (closed.length) await this.redis.zrem(key, ...closed);
    return ids.filter((_, i) => open[i]);
  }
}
