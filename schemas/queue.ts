import { z } from 'zod';
import { LOCAL_OWNER, Owner } from './auth.js';
import { JobSpec } from './job-spec.js';
import { JobResult, Progress, SkippedFile } from './job-status.js';
import { EpochMetrics } from './metrics.js';
import { BackendReport } from './model.js';
import { TrialLink } from './sweep.js';

/** What the API enqueues. Payloads outlive deploys: readers parse them again with today's schema. */
export const TrainingPayload = z.object({
  spec: JobSpec,
  owner: Owner.default(LOCAL_OWNER),
  submittedAt: z.string(),
  artifactQuotaBytes: z
    .number()
    .int()
    .nullable()
    .default(null)
    .describe("The owner's artifact quota when the job was submitted; the worker stops the job before it would pass it (null: none)"),
  trial: TrialLink.optional().describe("A sweep's trial: its sweep, place and early stopping"),
});
export type TrainingPayload = z.infer<typeof TrainingPayload>;

/** What the worker returns for a completed job: small numbers, never blobs (its artifacts are under its id). */
export const TrainingResult = JobResult;
export type TrainingResult = z.infer<typeof TrainingResult>;

/** What the worker reports through BullMQ's job progress (replaced whole at every report, so bounded). */
export const WorkerProgress = Progress.extend({
  latestMetrics: EpochMetrics.nullable(),
  announces: z
    .enum(['epoch', 'skipped'])
    .nullable()
    .optional()
    .describe('Set on the one report that brings news, for event streams: an epoch ended (latestMetrics), files were skipped'),
  backend: BackendReport.nullable(),
  skippedFiles: z.array(SkippedFile),
  skippedFileCount: z.number().int(),
  datasetDigest: z.string().nullable().default(null),
});
export type WorkerProgress = z.infer<typeof WorkerProgress>;

/** A live worker's heartbeat record in Redis (expires after three missed beats). */
export const WorkerHeartbeat = z.object({
  workerId: z.string(),
  host: z.string(),
  pid: z.number().int(),
  backend: BackendReport,
  queues: z.array(z.string()),
  at: z.string(),
});
export type WorkerHeartbeat = z.infer<typeof WorkerHeartbeat>;
