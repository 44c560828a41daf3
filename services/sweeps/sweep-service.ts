import { createHash, randomUUID } from 'node:crypto';
import { filteredIndex, labelsOf, type IndexKeys, type IndexScope } from '../../common/label-index.js';
import { ConflictError, DomainError, NotFoundError, QuotaExceededError, UnavailableError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { whenReady, type RedisClient } from '../../common/redis-connection.js';
import { redisKeys } from '../../common/redis-keys.js';
import { ashaStops, bestOf, rungKeysOf, scoreOf } from '../../common/sweep-trials.js';
import type { Caller } from '../../schemas/auth.js';
import { isUuid } from '../../schemas/ids.js';
import { JobSpec } from '../../schemas/job-spec.js';
import { FINISHED_STATES, type JobStatus } from '../../schemas/job-status.js';
import {
  bracketOf,
  RungArrival,
  SweepSpec,
  type SweepList,
  type SweepState,
  type SweepStatus,
  type Trial,
  type TrialLink,
} from '../../schemas/sweep.js';
import type { JobService } from '../jobs/job-service.js';
import { suggest, withParameters, type Observation, type Parameters } from './search.js';
import { checkSweep, type SweepLimits } from './sweep-spec.js';

const REDIS_WAIT_MS = 1000;
/** An API process advancing a sweep holds it this long at most (a crashed one lets go). */
const LOCK_MS = 30_000;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/** A trial as the sweep decided it (before its job is queued): its parameters and its job's id. */
interface TrialRecord {
  index: number;
  job: string;
  parameters: Parameters;
  /** Why its job could not be queued (a deleted dataset, say): the trial counts as failed. */
  error?: string;
}

/** What the sweep's hash holds. */
interface SweepRecord {
  id: string;
  owner: string;
  spec: SweepSpec;
  /** The base job spec as parsed when the sweep was made (defaults filled, ASHA's epochs). */
  base: Record<string, unknown>;
  state: SweepState;
  totalTrials: number;
  createdAt: string;
  finishedAt: string | null;
  best: SweepStatus['best'];
}

/** The job id of a sweep's trial: a function of (sweep, index), so queuing it twice queues one job. */
export function trialJobId(sweepId: string, index: number): string {
  const hex = createHash('sha256').update(`${sweepId}:${index}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/**
 * Sweeps: their records in Redis, their trials as ordinary jobs, and the loop that advances them
 * (queues trials up to the parallelism, finishes a sweep when every trial has ended, promotes the
 * best). Every decision is written before it is acted on, so any API process can pick a sweep up.
 */
export class SweepService {
  private readonly keys;

  constructor(
    private readonly redis: RedisClient,
    private readonly jobs: JobService,
    private readonly options: { prefix: string; maxTrials: number; quotaOpenJobs: number },
    private readonly log: Pick<Logger, 'warn' | 'info'>,
    private readonly onCompleted: (owner: string, sweep: SweepStatus) => Promise<void> = async () => undefined,
  ) {
    this.keys = redisKeys(options.prefix);
  }

  async create(caller: Caller, spec: SweepSpec): Promise<SweepStatus> {
    const limits: SweepLimits = { maxTrials: this.options.maxTrials, quotaOpenJobs: this.options.quotaOpenJobs };
    const { base, totalTrials } = checkSweep(spec, limits);
    await whenReady(this.redis, REDIS_WAIT_MS);
    const id = randomUUID();
    const now = Date.now();
    const record: SweepRecord = {
      id,
      owner: caller.owner,
      spec,
      base,
      state: 'running',
      totalTrials,
      createdAt: new Date(now).toISOString(),
      finishedAt: null,
      best: null,
    };
    const transaction = this.redis
      .multi()
      .hset(this.keys.sweep(id), 'record', JSON.stringify(record))
      .zadd(this.keys.allSweeps, now, id)
      .zadd(this.keys.ownerSweeps(caller.owner), now, id)
      .zadd(this.keys.activeSweeps, now, id);
    for (const label of labelsOf(spec)) {
      transaction
        .zadd(this.keys.labelledSweeps('everyone', label), now, id)
        .zadd(this.keys.labelledSweeps({ owner: caller.owner }, label), now, id);
    }
    await transaction.exec();
    await this.advance(id).catch((error: Error) => this.log.warn({ sweep: id, err: error.message }, 'could not advance the sweep'));
    return this.requireStatus(caller, id);
  }

  private async record(id: string): Promise<SweepRecord | null> {
    const raw = await this.redis.hget(this.keys.sweep(id), 'record');
    if (!raw) return null;
    const record = JSON.parse(raw) as SweepRecord;
    return { ...record, spec: SweepSpec.parse(record.spec) };
  }

  private async find(caller: Caller, id: string): Promise<SweepRecord> {
    if (!isUuid(id)) throw new NotFoundError(`no sweep with id ${id}`);
    await whenReady(this.redis, REDIS_WAIT_MS);
    const record = await this.record(id);
    if (!record || (!caller.admin && record.owner !== caller.owner)) throw new NotFoundError(`no sweep with id ${id}`);
    return record;
  }

  private async trialRecords(id: string): Promise<TrialRecord[]> {
    const entries = await this.redis.hgetall(this.keys.sweepTrials(id));
    return Object.values(entries)
      .map((entry) => JSON.parse(entry) as TrialRecord)
      .sort((a, b) => a.index - b.index);
  }

  private async epochValues(id: string): Promise<Map<number, Array<number | null>>> {
    const entries = await this.redis.hgetall(this.keys.sweepEpochs(id));
    return new Map(Object.entries(entries).map(([trial, values]) => [Number(trial), JSON.parse(values) as Array<number | null>]));
  }

  private async rungArrivals(record: SweepRecord): Promise<SweepStatus['rungs']> {
    return Promise.all(
      rungKeysOf(record.spec).map(async ({ bracket, epoch }) => ({
        bracket,
        epoch,
        arrivals: (await this.redis.lrange(this.keys.sweepRung(record.id, epoch, bracket), 0, -1)).map((entry) =>
          RungArrival.parse(JSON.parse(entry)),
        ),
      })),
    );
  }

  /** Each trial's job status (null while not queued), its objective per epoch, and the rungs. */
  private async gather(record: SweepRecord) {
    const owner: Caller = { owner: record.owner, admin: false };
    const trials = await this.trialRecords(record.id);
    const [statuses, values, rungs] = await Promise.all([
      Promise.all(trials.map((trial) => this.jobs.status(owner, trial.job))),
      this.epochValues(record.id),
      this.rungArrivals(record),
    ]);
    return { trials, statuses, values, rungs };
  }

  private describe(record: SweepRecord, parts: Awaited<ReturnType<SweepService['gather']>>): SweepStatus {
    const { spec } = record;
    const reductionFactor = spec.earlyStopping.type === 'asha' ? spec.earlyStopping.reductionFactor : 1;
    const trials: Trial[] = parts.trials.map((trial, i) => {
      const epochs = parts.values.get(trial.index) ?? [];
      return {
        index: trial.index,
        job: trial.job,
        state: trial.error ? 'failed' : (parts.statuses[i]?.state ?? 'pending'),
        parameters: trial.parameters,
        epochs,
        best: bestOf(epochs, spec.objective),
        rungs: parts.rungs.flatMap(({ bracket, epoch, arrivals }) => {
          const place = arrivals.findIndex((arrival) => arrival.trial === trial.index) + 1;
          if (!place) return [];
          const decision = ashaStops(arrivals, place, reductionFactor, spec.objective) ? 'stop' : 'continue';
          return [{ bracket, epoch, value: arrivals[place - 1].value, arrival: place, decision }];
        }),
      };
    });
    const leader = leaderOf(trials, spec.objective);
    return {
      id: record.id,
      owner: record.owner,
      name: spec.name ?? null,
      tags: spec.tags ?? [],
      state: record.state,
      spec,
      totalTrials: record.totalTrials,
      trials,
      rungs: parts.rungs,
      best: record.best ?? leader,
      createdAt: record.createdAt,
      finishedAt: record.finishedAt,
      links: { self: `/v1/sweeps/${record.id}` },
    };
  }

  async requireStatus(caller: Caller, id: string): Promise<SweepStatus> {
    const record = await this.find(caller, id);
    return this.describe(record, await this.gather(record));
  }

  /** The caller's sweeps (everyone's for the admin), newest first; by name and tag from their own indexes. */
  async list(caller: Caller, filter: { limit: number; offset: number; name?: string; tag?: string }): Promise<SweepList> {
    await whenReady(this.redis, REDIS_WAIT_MS);
    const scope: IndexScope = caller.admin ? 'everyone' : { owner: caller.owner };
    const keys: IndexKeys = {
      all: (s) => (s === 'everyone' ? this.keys.allSweeps : this.keys.ownerSweeps(s.owner)),
      labelled: (s, label) => this.keys.labelledSweeps(s, label),
    };
    const index = await filteredIndex(this.redis, keys, scope, { name: filter.name, tag: filter.tag });
    const page = { limit: filter.limit, offset: filter.offset };
    const [ids, total] = await Promise.all([index.page(page.offset, page.offset + page.limit - 1), index.count()]);
    const records = (await Promise.all(ids.map((id) => this.record(id)))).filter((record): record is SweepRecord => record !== null);
    const items = records.map((record) => {
      const {
        trials: _trials,
        rungs: _rungs,
        ...summary
      } = this.describe(record, { trials: [], statuses: [], values: new Map(), rungs: [] });
      return summary;
    });
    return { items, total, ...page };
  }

  /** Stops queuing trials and cancels those queued or running; the ended ones and their models stay. */
  async cancel(caller: Caller, id: string): Promise<SweepStatus> {
    const record = await this.find(caller, id);
    if (record.state !== 'running') throw new ConflictError(`sweep ${id} is already ${record.state}`, { state: record.state });
    await this.finish(record, 'cancelled', null);
    const owner: Caller = { owner: record.owner, admin: false };
    for (const trial of await this.trialRecords(id)) {
      await this.jobs.cancel(owner, trial.job).catch((error: Error) => {
        if (!(error instanceof ConflictError || error instanceof NotFoundError)) throw error;
      });
    }
    return this.requireStatus(caller, id);
  }

  /** Removes an ended sweep, its trials' jobs and everything they keep (409 while it runs). */
  async purge(caller: Caller, id: string): Promise<void> {
    const record = await this.find(caller, id);
    if (record.state === 'running') throw new ConflictError(`sweep ${id} is running: cancel it first`, { state: record.state });
    const owner: Caller = { owner: record.owner, admin: false };
    for (const trial of await this.trialRecords(id)) {
      await this.jobs.purge(owner, trial.job).catch((error: Error) => {
        if (!(error instanceof NotFoundError)) throw error;
      });
    }
    const rungKeys = rungKeysOf(record.spec).map(({ bracket, epoch }) => this.keys.sweepRung(id, epoch, bracket));
    const transaction = this.redis
      .multi()
      .del(this.keys.sweep(id), this.keys.sweepTrials(id), this.keys.sweepEpochs(id), this.keys.sweepArrivals(id), ...rungKeys)
      .zrem(this.keys.allSweeps, id)
      .zrem(this.keys.ownerSweeps(record.owner), id)
      .zrem(this.keys.activeSweeps, id);
    for (const label of labelsOf(record.spec)) {
      transaction.zrem(this.keys.labelledSweeps('everyone', label), id).zrem(this.keys.labelledSweeps({ owner: record.owner }, label), id);
    }
    await transaction.exec();
  }

  private async finish(record: SweepRecord, state: SweepState, best: SweepStatus['best']): Promise<void> {
    const finished: SweepRecord = { ...record, state, best, finishedAt: new Date().toISOString() };
    await this.redis
      .multi()
      .hset(this.keys.sweep(record.id), 'record', JSON.stringify(finished))
      .zrem(this.keys.activeSweeps, record.id)
      .exec();
    this.log.info({ sweep: record.id, state, best }, 'sweep ended');
  }

  /** Advances every running sweep once (each under a lease, so API processes share the work). */
  async advanceAll(): Promise<void> {
    await whenReady(this.redis, REDIS_WAIT_MS);
    for (const id of await this.redis.zrange(this.keys.activeSweeps, 0, -1)) {
      await this.advance(id).catch((error: Error) => this.log.warn({ sweep: id, err: error.message }, 'could not advance the sweep'));
    }
  }

  private async advance(id: string): Promise<void> {
    const token = randomUUID();
    const lock = this.keys.sweepLock(id);
    if ((await this.redis.set(lock, token, 'PX', LOCK_MS, 'NX')) !== 'OK') return;
    try {
      const record = await this.record(id);
      if (!record || record.state !== 'running') {
        await this.redis.zrem(this.keys.activeSweeps, id);
        return;
      }
      await this.step(record);
    } finally {
      await this.redis.eval(RELEASE, 1, lock, token);
    }
  }

  /** Decides new trials up to the parallelism, queues those not queued, and ends the sweep once all have ended. */
  private async step(record: SweepRecord): Promise<void> {
    const parts = await this.gather(record);
    const ended = (i: number) => Boolean(parts.trials[i].error) || FINISHED_STATES.includes(parts.statuses[i]?.state ?? 'queued');
    const status = this.describe(record, parts);
    let open = parts.trials.filter((_, i) => !ended(i)).length;
    for (let index = parts.trials.length; index < record.totalTrials && open < record.spec.parallelism; index++, open++) {
      const trial: TrialRecord = {
        index,
        job: trialJobId(record.id, index),
        parameters: suggest(record.spec, index, observations(status)),
      };
      // Written before its job is queued: a process that dies here leaves it to be queued by the next.
      await this.redis.hsetnx(this.keys.sweepTrials(record.id), String(index), JSON.stringify(trial));
      parts.trials.push(trial);
      parts.statuses.push(null);
    }
    for (const [i, trial] of parts.trials.entries()) {
      if (parts.statuses[i] || trial.error) continue;
      if (!(await this.queueTrial(record, trial))) break;
    }
    if (parts.trials.length === record.totalTrials && parts.trials.every((_, i) => ended(i))) {
      await this.finish(record, 'completed', status.best);
      if (record.spec.promote && status.best)
        await this.jobs.aliases.set(record.owner, record.spec.promote, { job: status.best.job, checkpoint: status.best.epoch });
      await this.onCompleted(record.owner, { ...status, state: 'completed' });
    }
  }

  /** Queues a decided trial's job; false when the owner's quota or the queue is full (tried again next time). */
  private async queueTrial(record: SweepRecord, trial: TrialRecord): Promise<boolean> {
    const { spec } = record;
    const asha = spec.earlyStopping.type === 'asha' ? spec.earlyStopping : null;
    const link: TrialLink = {
      sweep: record.id,
      trial: trial.index,
      objective: spec.objective,
      ...(asha ? bracketOf(asha, trial.index) : { bracket: 0, rungs: [] }),
      reductionFactor: asha?.reductionFactor ?? 1,
      judgeBy: asha?.judgeBy ?? 'best',
    };
    const tags = [...new Set([...(spec.tags ?? []), `sweep:${record.id}`])].slice(0, 20);
    const jobSpec = JobSpec.parse({
      ...withParameters(record.base, trial.parameters),
      name: spec.name ?? `sweep ${record.id.slice(0, 8)}`,
      tags,
    });
    try {
      await this.jobs.submitTrial({ owner: record.owner, admin: false }, trial.job, jobSpec, link);
      return true;
    } catch (error) {
      if (error instanceof QuotaExceededError || error instanceof UnavailableError) return false;
      if (!(error instanceof DomainError)) throw error;
      const failed: TrialRecord = { ...trial, error: error.message };
      await this.redis.hset(this.keys.sweepTrials(record.id), String(trial.index), JSON.stringify(failed));
      trial.error = error.message;
      return true;
    }
  }
}

/** The ended trials with an objective, for the model-based search. */
function observations(status: SweepStatus): Observation[] {
  return status.trials.flatMap(({ best, state, parameters }) =>
    best && FINISHED_STATES.includes(state as JobStatus['state'])
      ? [{ parameters, score: scoreOf(best.value, status.spec.objective) }]
      : [],
  );
}

/** The trial with the best objective at any epoch so far (the first of equals). */
function leaderOf(trials: readonly Trial[], objective: SweepSpec['objective']): SweepStatus['best'] {
  let leader: SweepStatus['best'] = null;
  for (const { best, index, job } of trials) {
    if (best && (!leader || scoreOf(best.value, objective) > scoreOf(leader.value, objective))) leader = { trial: index, job, ...best };
  }
  return leader;
}
