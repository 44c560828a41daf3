import { z } from 'zod';
import { DatasetSpec } from './dataset.js';
import { ResidualStream } from './model.js';
import { WeightsLineage } from './weights.js';

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
export type Prediction = z.infer<typeof Prediction>;

export const ClassificationReport = z.object({
  perClass: z.array(
    z.object({ className: z.string(), precision: z.number(), recall: z.number(), f1: z.number(), support: z.number().int() }),
  ),
  confusionMatrix: z.object({
    classNames: z.array(z.string()),
    rows: z.literal('true class'),
    columns: z.literal('predicted class'),
    matrix: z.array(z.array(z.number().int())),
  }),
});
export type ClassificationReport = z.infer<typeof ClassificationReport>;

export const Evaluation = z.object({
  split: z.enum(['validation', 'all']),
  loss: z.number().nullable(),
  accuracy: z.number().nullable(),
  top5Accuracy: z.number().nullable(),
  images: z.number().int(),
});
export type Evaluation = z.infer<typeof Evaluation>;

/** Top-1 agreement of int8 with float32 that int8 predictions need to be offered. */
export const INT8_MIN_AGREEMENT = 0.99;

export const Int8Check = z.object({
  offered: z.boolean().describe(`Whether predictions may ask for precision=int8: top-1 agreement with float32 >= ${INT8_MIN_AGREEMENT}`),
  reason: z.string().nullable().describe('Why int8 is not offered'),
  calibrationImages: z.number().int().describe('Training images whose activation ranges set the scales'),
  residual: ResidualStream.nullable().describe(
    'The residual stream of the variant offered (int8 tried first, then fp32), or of the last tried',
  ),
  heldOutImages: z.number().int().describe('Validation images both precisions predicted'),
  agreement: z.number().nullable().describe('Share of held-out images whose top-1 class is the same in int8 and float32'),
  accuracy: z.number().nullable().describe('Top-1 accuracy of int8 on the held-out images'),
  fp32Accuracy: z.number().nullable().describe('Top-1 accuracy of float32 on the same images'),
});
export type Int8Check = z.infer<typeof Int8Check>;

/** What GET /v1/jobs/:id/metrics serves: written by the worker after every epoch and at the end. */
export const Metrics = z.object({
  classNames: z.array(z.string()),
  epochs: z.array(EpochMetrics),
  evaluation: Evaluation.nullable(),
  bestEpoch: z.number().int().nullable().optional().describe('Best epoch by the monitored validation metric (validation loss by default)'),
  earlyStopping: z.object({ stoppedAfterEpoch: z.number().int(), bestEpoch: z.number().int(), monitor: z.string() }).optional(),
  classWeights: z.array(z.number()).nullable().optional().describe('The per-class loss weights the job trained with, in class order'),
  featureCache: z
    .object({ key: z.string(), hit: z.boolean(), backboneImages: z.number().int() })
    .optional()
    .describe('feature_extraction: the CNN-code cache key, whether it was a hit, and how many images the backbone ran on'),
  frozenStages: z
    .object({
      stage: z.string().describe('The first stage that trains'),
      reused: z.boolean(),
      imagesComputed: z.number().int().describe('Images the frozen stages ran on to be kept (each once)'),
      bytes: z.number().int().describe('What keeping their output for every image takes (or would have)'),
      storedAs: z
        .enum(['float32', 'bfloat16'])
        .optional()
        .describe('How their output is kept: bfloat16 in a bf16 job, whose kernels read nothing more of it'),
      reason: z.string().nullable().describe('Why they run every step instead'),
    })
    .optional()
    .describe("fine_tuning without augmentation from layer1 on: the frozen stages' output computed once per image, or why not"),
  int8: Int8Check.optional().describe(
    'The final model quantised to int8 against itself in float32: offered for predictions only where they agree',
  ),
  report: ClassificationReport.nullable().describe('Of the final model on the validation split (training modes)'),
  weights: WeightsLineage.nullable().default(null).describe('Where the weights the job started from came from'),
  dataset: z
    .object({ spec: DatasetSpec, digest: z.string().nullable() })
    .nullable()
    .default(null)
    .describe("The data the job trained or evaluated on: its spec and the preflight's digest of its files and bytes"),
  validationPredictions: z.array(Prediction),
});
export type Metrics = z.infer<typeof Metrics>;

export const emptyMetrics = (classNames: string[] = []): Metrics => ({
  classNames,
  epochs: [],
  evaluation: null,
  report: null,
  validationPredictions: [],
  weights: null,
  dataset: null,
});
