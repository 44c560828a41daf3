import { progressAtStart, SKIPPED_FILES_IN_STATUS, type Phase, type SkippedFile } from '../../schemas/job-status.js';
import type { EpochMetrics } from '../../schemas/metrics.js';
import type { WorkerProgress } from '../../schemas/queue.js';
import type { FetchProgress } from '../../engine/model/weight-variants.js';
import type { JobContext } from './job-context.js';

/** At most one report a second (and one at every phase change): each report is a Redis write. */
const PROGRESS_INTERVAL_MS = 1000;

/** Tracks phase, steps and ETA of a job, and reports them through the queue. */
export class ProgressReporter {
  private lastReport = 0;
  /** Images trained since the last report, for its rate. */
  private imagesSinceReport = 0;
  private readonly startedAt = Date.now();
  private stepsDoneAtStart = -1;
  private readonly progress: WorkerProgress;

  constructor(
    private readonly ctx: JobContext,
    totalEpochs: number,
  ) {
    this.progress = {
      ...progressAtStart('starting', totalEpochs),
      latestMetrics: null,
      backend: ctx.backend,
      skippedFiles: [],
      skippedFileCount: 0,
      datasetDigest: null,
      announces: null,
    };
  }

  async update(change: Partial<WorkerProgress>, force = false): Promise<void> {
    const phaseChanged = change.phase !== undefined && change.phase !== this.progress.phase;
    Object.assign(this.progress, change);
    const { epoch, totalEpochs, step, totalSteps } = this.progress;
    const done = Math.max(0, epoch - 1) * totalSteps + step;
    // A resumed job's ETA counts only the steps this run has taken.
    if (this.stepsDoneAtStart < 0 && done > 0) this.stepsDoneAtStart = done - 1;
    const all = Math.max(1, totalEpochs * totalSteps);
    const stepsThisRun = done - Math.max(this.stepsDoneAtStart, 0);
    this.progress.percent = Math.min(100, Math.round((1000 * done) / all) / 10);
    this.progress.etaSeconds = stepsThisRun > 0 ? Math.round((((Date.now() - this.startedAt) / 1000) * (all - done)) / stepsThisRun) : null;
    if (force || phaseChanged || Date.now() - this.lastReport >= PROGRESS_INTERVAL_MS) {
      this.lastReport = Date.now();
      this.imagesSinceReport = 0;
      await this.ctx.report({ ...this.progress });
    }
  }

  /** A training step done on `images` images: the rate is the images since the last report over the time since it. */
  stepDone(step: number, images: number): Promise<void> {
    this.imagesSinceReport += images;
    const seconds = (Date.now() - this.lastReport) / 1000;
    const imagesPerSecond = seconds > 0 ? Math.round((10 * this.imagesSinceReport) / seconds) / 10 : this.progress.imagesPerSecond;
    return this.update({ step, imagesPerSecond });
  }

  /** Reports an epoch's metrics, announced as news on this one report only. */
  async epochEnded(metrics: EpochMetrics): Promise<void> {
    await this.announce({ latestMetrics: metrics, announces: 'epoch' });
  }

  private async announce(change: Partial<WorkerProgress>): Promise<void> {
    await this.update(change, true);
    this.progress.announces = null;
  }

  phase(phase: Phase): Promise<void> {
    return this.update({ phase, download: phase === 'downloading_weights' ? this.progress.download : null }, true);
  }

  /** Weights on their way into the store (or another worker's fetch waited for): the phase and its bytes. */
  downloading({ variant, bytes, totalBytes, waiting }: FetchProgress): Promise<void> {
    const percent = totalBytes ? Math.min(100, Math.round((1000 * bytes) / totalBytes) / 10) : null;
    return this.update(
      { phase: 'downloading_weights', download: { variant, bytes, totalBytes, percent, waiting } },
      !waiting && percent === 100,
    );
  }

  planSteps(stepsPerEpoch: number): void {
    this.progress.totalSteps = stepsPerEpoch;
  }

  /** The preflight's digest of the dataset, shown in the job's status from now on. */
  datasetDigest(digest: string | null): Promise<void> {
    return this.update({ datasetDigest: digest }, true);
  }

  /** Progress is rewritten whole at every report, so it carries a bounded sample of the skipped files. */
  skipped(files: readonly SkippedFile[]): Promise<void> {
    return this.announce({ skippedFiles: files.slice(0, SKIPPED_FILES_IN_STATUS), skippedFileCount: files.length, announces: 'skipped' });
  }
}
