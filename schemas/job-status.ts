import { z } from 'zod';
import { JobSpec } from './job-spec.js';

export const JobState = z.enum(['queued', 'running', 'completed', 'failed', 'cancelled']);
export type JobState = z.infer<typeof JobState>;

export const Phase = z.enum(['queued', 'loading_data', 'building_model', 'extracting_features', 'training', 'validating', 'evaluating', 'saving', 'done']);
export type Phase = z.infer<typeof Phase>;

export const Progress = z.object({
  phase: Phase,
  epoch: z.number().int(),
  totalEpochs: z.number().int(),
  step: z.number().int(),
  totalSteps: z.number().int(),
  percent: z.number().min(0).max(100),
  etaSeconds: z.number().nullable(),
});
export type Progress = z.infer<typeof Progress>;

export const EpochMetrics = z.object({
  epoch: z.number().int(),
  trainLoss: z.number(),
  trainAccuracy: z.number(),
  validationLoss: z.number().nullable(),
  validationAccuracy: z.number().nullable(),
  validationTop5Accuracy: z.number().nullable(),
  learningRate: z.number(),
  seconds: z.number(),
});
export type EpochMetrics = z.infer<typeof EpochMetrics>;

/** One held-out image and what the final model predicted for it (kept to audit the checkpoint). */
export const Prediction = z.object({ file: z.string(), label: z.number().int(), probabilities: z.array(z.number()) });

export const ClassificationReport = z.object({
  perClass: z.array(z.object({ className: z.string(), precision: z.number(), recall: z.number(), f1: z.number(), support: z.number().int() })),
  confusionMatrix: z.object({ classNames: z.array(z.string()), rows: z.literal('true class'), columns: z.literal('predicted class'), matrix: z.array(z.array(z.number().int())) }),
});
export type ClassificationReport = z.infer<typeof ClassificationReport>;

export const Metrics = z.object({
  classNames: z.array(z.string()),
  epochs: z.array(EpochMetrics),
  evaluation: z
    .object({
      split: z.enum(['validation', 'all']),
      loss: z.number().nullable(),
      accuracy: z.number().nullable(),
      top5Accuracy: z.number().nullable(),
      images: z.number().int(),
    })
    .nullable(),
  /** The best epoch by the monitored validation metric (validation loss unless earlyStopping says otherwise). */
  bestEpoch: z.number().int().nullable().optional(),
  earlyStopping: z.object({ stoppedAfterEpoch: z.number().int(), bestEpoch: z.number().int(), monitor: z.string() }).optional(),
  /** feature_extraction: the CNN-code cache key, whether it was a hit, and how many images the backbone ran on. */
  featureCache: z.object({ key: z.string(), hit: z.boolean(), backboneImages: z.number().int() }).optional(),
  /** Of the final model on the validation split (training modes). */
  report: ClassificationReport.nullable(),
  validationPredictions: z.array(Prediction),
});
export type Metrics = z.infer<typeof Metrics>;

export const BackendReport = z.object({ choice: z.string(), backend: z.string(), package: z.string(), version: z.string() });

export const SkippedFile = z.object({ file: z.string(), reason: z.string() });

/** What the worker reports through BullMQ's job progress. */
export const WorkerProgress = Progress.extend({
  latestMetrics: EpochMetrics.nullable(),
  backend: BackendReport.nullable(),
  skippedFiles: z.array(SkippedFile),
});
export type WorkerProgress = z.infer<typeof WorkerProgress>;

export const JobStatus = z.object({
  id: z.string().uuid(),
  state: JobState,
  mode: z.string(),
  spec: JobSpec,
  progress: Progress,
  latestMetrics: EpochMetrics.nullable(),
  backend: BackendReport.nullable(),
  /** Dataset files the preflight found unusable; the job trains on the rest. */
  skippedFiles: z.array(SkippedFile),
  cancelRequested: z.boolean(),
  attempts: z.number().int(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  failure: z.object({ reason: z.string() }).nullable(),
  /** What the worker returned for a completed job. */
  result: z
    .object({ epochsCompleted: z.number().int(), resumedFromEpoch: z.number().int().nullable(), validationAccuracy: z.number().nullable() })
    .nullable(),
  links: z.record(z.string(), z.string()),
});
export type JobStatus = z.infer<typeof JobStatus>;
