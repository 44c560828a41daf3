import type { ArtifactStore } from '../../common/artifact-store.js';
import { InvalidInputError, NotFoundError, QuotaExceededError } from '../../common/errors.js';
import { JobArtifacts, type CheckpointSelector, type ModelFolder } from '../../common/job-artifacts.js';
import type { Caller } from '../../schemas/auth.js';
import type { JobStatus } from '../../schemas/job-status.js';
import type { AliasTarget, ModelAlias } from '../../schemas/model-alias.js';
import type { JobService } from './job-service.js';
import type { AliasRecord } from './model-aliases.js';

/** Aliases an owner may keep. */
export const MAX_ALIASES_PER_OWNER = 100;

export const selectorOf = (checkpoint: AliasTarget['checkpoint']): CheckpointSelector =>
  typeof checkpoint === 'number' ? { kind: 'epoch', epoch: checkpoint } : { kind: checkpoint };

/** What an alias resolves to now: the job, the saved model's folder, and how to ask for its download. */
export interface ResolvedModel {
  job: JobStatus;
  model: ModelFolder;
  selector: CheckpointSelector;
}

/** Model aliases: per-owner names that point at a job's saved model, served as if they were the job. */
export class ModelService {
  constructor(
    private readonly jobs: JobService,
    private readonly store: ArtifactStore,
  ) {}

  private get aliases() {
    return this.jobs.aliases;
  }

  /** Points the alias at a saved model of one of the caller's completed jobs (the checkpoint must exist). */
  async point(caller: Caller, name: string, target: AliasTarget): Promise<{ alias: ModelAlias; created: boolean }> {
    await this.jobs.completedModel(caller, target.job);
    await this.modelOf(target.job, selectorOf(target.checkpoint)).catch((error: Error) => {
      throw error instanceof NotFoundError ? InvalidInputError.field('checkpoint', error.message) : error;
    });
    const created = !(await this.aliases.get(caller.owner, name));
    if (created && (await this.aliases.count(caller.owner)) >= MAX_ALIASES_PER_OWNER)
      throw new QuotaExceededError(`you keep ${MAX_ALIASES_PER_OWNER} model aliases, the most an owner may; delete one first`, {
        quota: 'modelAliases',
        limit: MAX_ALIASES_PER_OWNER,
      });
    await this.aliases.set(caller.owner, name, target);
    return { alias: await this.describe(caller, name), created };
  }

  private async require(caller: Caller, name: string): Promise<AliasRecord> {
    const record = await this.aliases.get(caller.owner, name);
    if (!record) throw new NotFoundError(`no model alias named ${name}`);
    return record;
  }

  async describe(caller: Caller, name: string): Promise<ModelAlias> {
    const record = await this.require(caller, name);
    const history = await this.aliases.history(caller.owner, name);
    return { ...this.summary(caller.owner, name, record), history };
  }

  private summary(owner: string, name: string, { job, checkpoint, at }: AliasRecord): Omit<ModelAlias, 'history'> {
    const self = `/v1/models/${name}`;
    return {
      name,
      owner,
      job,
      checkpoint,
      updatedAt: at,
      links: { self, predict: `${self}/predict`, checkpoint: `${self}/checkpoint`, job: `/v1/jobs/${job}` },
    };
  }

  async list(caller: Caller): Promise<{ items: Array<Omit<ModelAlias, 'history'>> }> {
    const all = await this.aliases.all(caller.owner);
    const items = [...all].sort(([a], [b]) => a.localeCompare(b)).map(([name, record]) => this.summary(caller.owner, name, record));
    return { items };
  }

  async remove(caller: Caller, name: string): Promise<void> {
    if (!(await this.aliases.remove(caller.owner, name))) throw new NotFoundError(`no model alias named ${name}`);
  }

  /** A completed job's final model, as its own predictions use it. */
  async ofJob(caller: Caller, jobId: string): Promise<ResolvedModel> {
    const job = await this.jobs.completedModel(caller, jobId);
    const selector: CheckpointSelector = { kind: 'final' };
    return { job, model: await this.modelOf(jobId, selector), selector };
  }

  /** The model the alias points at now. */
  async resolve(caller: Caller, name: string): Promise<ResolvedModel> {
    const record = await this.require(caller, name);
    const selector = selectorOf(record.checkpoint);
    const job = await this.jobs.completedModel(caller, record.job);
    return { job, model: await this.modelOf(record.job, selector), selector };
  }

  private modelOf(jobId: string, selector: CheckpointSelector): Promise<ModelFolder> {
    return new JobArtifacts(this.store, jobId).savedModel(selector);
  }
}
