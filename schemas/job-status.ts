import { z } from 'zod';
import { JobSpec } from './job-spec.js';
import { EpochMetrics } from './metrics.js';
import { BackendReport, TransferMode } from './model.js';

export const JobState = z
  .enum(['queued', 'running', 'stalled', 'completed', 'stopped_early', 'failed', 'cancelled'])
  .describe(
    'stalled: taken by a worker that stopped sending heartbeats; another worker resumes it from its last checkpoint. ' +
      "stopped_early: a sweep's trial that ASHA stopped at a rung; its checkpoints and final model are kept as a completed job's",
  );
export type JobState = z.infer<typeof JobState>;
export const FINISHED_STATES: readonly JobState[] = ['completed', 'stopped_early', 'failed', 'cancelled'];
/** Ended with a final model. */
export const HAS_MODEL_STATES: readonly JobState[] = ['completed', 'stopped_early'];

/** `queued` only while the job is queued; `starting` until its worker first reports; `done` once completed. */
export const Phase = z.enum([
  'queued',
  'starting',
  'downloading_weights',
  'loading_data',
  'building_model',
  'extracting_features',
  'training',
  'validating',
  'evaluating',
  'saving',
  'quantizing',
  'done',
  'cancelled',
]);
export type Phase = z.infer<typeof Phase>;

export const Progress = z.object({
  phase: Phase,
  epoch: z.number().int(),
  totalEpochs: z.number().int(),
  step: z.number().int(),
  totalSteps: z.number().int(),
  percent: z.number().min(0).max(100),
  etaSeconds: z.number().nullable(),
  imagesPerSecond: z
    .number()
    .nullable()
    .default(null)
    .describe(
      'Training images per second over the latest steps (about a second of them) while the job runs; null before its first step and once it ends',
    ),
  download: z
    .object({
      variant: z.string(),
      bytes: z.number().int(),
      totalBytes: z.number().int().nullable(),
      percent: z.number().min(0).max(100).nullable(),
      waiting: z.boolean().describe('Another worker is fetching these weights; this job waits for its copy'),
    })
    .nullable()
    .default(null)
    .describe('While the phase is downloading_weights: the weights being fetched (once, into the artifact store)'),
});
export type Progress = z.infer<typeof Progress>;

/** A job's progress before its worker reports any. */
export const progressAtStart = (phase: 'queued' | 'starting', totalEpochs: number): Progress => ({
  phase,
  epoch: 0,
  totalEpochs,
  step: 0,
  totalSteps: 0,
  percent: 0,
  etaSeconds: null,
  imagesPerSecond: null,
  download: null,
});

export const SkippedFile = z.object({ file: z.string(), reason: z.string() });
export type SkippedFile = z.infer<typeof SkippedFile>;
/** Status carries the first few; GET /v1/jobs/:id/preflight has them all. */
export const SKIPPED_FILES_IN_STATUS = 20;

export const JobResult = z.object({
  epochsCompleted: z.number().int(),
  resumedFromEpoch: z.number().int().nullable(),
  validationAccuracy: z.number().nullable(),
  stoppedEarlyAfterEpoch: z.number().int().nullable().default(null).describe("A sweep's ASHA stopped the trial after this epoch"),
});

export const JobStatus = z.object({
  id: z.uuid(),
  owner: z.string().describe('The owner of the API key that submitted the job (local in single-user mode)'),
  state: JobState,
  mode: z.union([TransferMode, z.string()]).describe('A job stored by an older release may name a retired mode'),
  spec: z.union([JobSpec, z.record(z.string(), z.unknown())]).describe('The spec as parsed today, or as stored when it no longer parses'),
  progress: Progress,
  latestMetrics: EpochMetrics.nullable(),
  backend: BackendReport.nullable(),
  skippedFiles: z
    .array(SkippedFile)
    .describe(`Dataset files the preflight found unusable (the first ${SKIPPED_FILES_IN_STATUS}); the job trains on the rest`),
  skippedFileCount: z.number().int(),
  dataset: z
    .object({
      digest: z
        .string()
        .nullable()
        .describe("The preflight's SHA-256 over the files and bytes the job trains on (null until it has read them)"),
    })
    .nullable()
    .describe('Null for a job without a dataset; the spec names it (spec.dataset)'),
  cancelRequested: z.boolean(),
  attempts: z.number().int(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  failure: z.object({ reason: z.string() }).nullable(),
  result: JobResult.nullable().describe('What the worker returned for a completed job'),
  links: z.record(z.string(), z.string()),
});
export type JobStatus = z.infer<typeof JobStatus>;

export const JobList = z.object({
  items: z.array(JobStatus),
  total: z.number().int(),
  limit: z.number().int(),
  offset: z.number().int(),
});
export type JobList = z.infer<typeof JobList>;
