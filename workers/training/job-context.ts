import type { ArtifactStore } from '../../common/artifact-store.js';
import type { JobArtifacts } from '../../common/job-artifacts.js';
import { CANCELLED_REASON } from '../../common/queue-facade.js';
import type { Config } from '../../schemas/config.js';
import type { JobSpec } from '../../schemas/job-spec.js';
import type { EpochMetrics } from '../../schemas/metrics.js';
import type { BackendReport } from '../../schemas/model.js';
import type { WorkerProgress } from '../../schemas/queue.js';
import type { VariantSource } from '../../engine/model/weight-variants.js';

/** What a job's steps share: its spec, where its artifacts go, and its lines back to the queue. */
export interface JobContext {
  jobId: string;
  spec: JobSpec;
  config: Config;
  artifacts: JobArtifacts;
  /** The artifact store itself, for what is not the job's own (caches, fetched uploads, an earlier job's model). */
  store: ArtifactStore;
  backend: BackendReport;
  report(progress: WorkerProgress): Promise<void>;
  /** Checked before every step; true stops the job as cancelled. */
  cancelRequested(): Promise<boolean>;
  /** Checked before every step; true: the worker is stopping, save the epoch so far and give the job back. */
  handBackRequested(): boolean;
  /** Records the bytes the job keeps in the store, for its owner's quota: after every checkpoint. */
  measureArtifacts(): Promise<void>;
  /**
   * Before writing `bytes` more of models or checkpoints (`what`): refuses (InvalidJobError, naming the
   * quota) when the owner's jobs would then keep more than their artifact quota.
   */
  ensureArtifactRoom(bytes: number, what: string): Promise<void>;
  /**
   * A sweep's trial: records the epochs so far with its sweep (after each epoch, and on resuming) and
   * answers whether ASHA stops it at a rung. Null outside sweeps.
   */
  reportToSweep: ((history: readonly EpochMetrics[]) => Promise<boolean>) | null;
  /** A sweep's objective: the trial's best epoch (kept, served as epoch=best) is chosen by it. */
  sweepObjective: 'validation_loss' | 'validation_accuracy' | null;
  /** Where weight variants are kept and fetched from (the progress of a fetch is the job's). */
  weights: Omit<VariantSource, 'onProgress'>;
  /** A line in the worker's log and the job's own log, with the job id. */
  log(message: string, fields?: Record<string, unknown>): void;
}

/** The job's spec cannot succeed as given: retrying would fail the same way. */
export class InvalidJobError extends Error {}

export class JobCancelledError extends Error {
  constructor() {
    super(CANCELLED_REASON);
  }
}

/** The job goes back to the queue, to be resumed from its interrupted checkpoint by any worker. */
export class JobHandedBackError extends Error {
  constructor() {
    super('handed back: the worker is stopping');
  }
}
