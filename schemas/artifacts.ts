import { z } from 'zod';
import { JobSpec } from './job-spec.js';
import { EpochMetrics } from './metrics.js';
import { BackendReport, Preprocessing, ResidualStream, TransferMode } from './model.js';
import { WeightsLineage } from './weights.js';

/** What a saved model downloads as: tfjs' layers model (tar.gz), torchvision-named safetensors, or ONNX. */
export const CheckpointFormat = z
  .enum(['tar.gz', 'safetensors', 'onnx'])
  .describe(
    'tar.gz: the tfjs layers model with metadata.json; safetensors: torchvision state_dict names; onnx: opset 17, NCHW input, logits out',
  );
export type CheckpointFormat = z.infer<typeof CheckpointFormat>;

/** What a download's weights are: as trained, or (ONNX only) the int8 backbone the predictions run, as QDQ. */
export const DownloadPrecision = z
  .enum(['fp32', 'int8'])
  .describe('int8 (with format=onnx): ONNX QDQ of the int8 backbone predictions run, where the job offers int8 (metrics.int8), else 409');
export type DownloadPrecision = z.infer<typeof DownloadPrecision>;

/** A saved model to convert to a format the worker did not write, and the store key to write it at. */
export const ExportRequest = z.object({
  jobId: z.string(),
  model: z.object({ folder: z.string(), label: z.string() }),
  format: CheckpointFormat,
  precision: DownloadPrecision.default('fp32'),
  key: z.string(),
});
export type ExportRequest = z.infer<typeof ExportRequest>;

/** tfjs' description of one tensor inside a weights file. */
const WeightsManifestEntry = z.object({
  name: z.string(),
  shape: z.array(z.number().int()),
  dtype: z.enum(['float32', 'int32', 'bool', 'string', 'complex64']),
});

/** `state.json` of an epoch checkpoint, written last: a checkpoint counts only once it exists. */
export const CheckpointState = z.object({
  epoch: z.number().int().min(1),
  history: z.array(EpochMetrics),
  optimizerWeights: z.array(WeightsManifestEntry),
});
export type CheckpointState = z.infer<typeof CheckpointState>;

/** Where an epoch stood when its worker stopped between two steps: enough to go on as if never stopped. */
export const EpochPosition = z.object({
  stepsDone: z.number().int().min(1),
  lossSum: z.number(),
  correct: z.number().int().min(0),
  dropoutCalls: z.record(z.string(), z.number().int().min(0)).describe('Each Dropout layer call counter, so masks go on where they were'),
});
export type EpochPosition = z.infer<typeof EpochPosition>;

/** `state.json` of the interrupted checkpoint: `epoch` is the one in progress. */
export const InterruptedState = CheckpointState.extend({ position: EpochPosition });
export type InterruptedState = z.infer<typeof InterruptedState>;

/** `metadata.json` beside every saved model: what a client needs to use it. */
export const ModelMetadata = z.object({
  classNames: z.array(z.string()),
  preprocessing: Preprocessing,
  spec: JobSpec,
  mode: TransferMode,
  inputSize: z.number().int(),
  backend: BackendReport,
  epoch: z.number().int().optional().describe('The epoch of an epoch checkpoint'),
  epochs: z.number().int().optional().describe('Epochs trained into the final model'),
  weights: WeightsLineage.optional().describe('Where the weights the job started from came from'),
});
export type ModelMetadata = z.infer<typeof ModelMetadata>;

/**
 * Where a saved model's frozen tensors are: a torchvision-named safetensors in the store (a weight
 * variant, or the job's own copy of weights it started from), checked by its sha256. The model's own
 * weights file holds only the tensors of layers that train.
 */
export const FrozenSource = z.object({
  key: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  variant: z.string().nullable().describe('The weight variant pinned for the job while it keeps models that read it'),
});
export type FrozenSource = z.infer<typeof FrozenSource>;

/** Where model.json's userDefinedMetadata names its frozen source. */
export const FROZEN_SOURCE_KEY = 'retrainFrozenFrom';

/** The frozen source in a model.json's userDefinedMetadata; null when the model keeps every weight itself. */
export function frozenSourceIn(metadata: object | undefined): FrozenSource | null {
  const value = (metadata as Record<string, unknown> | undefined)?.[FROZEN_SOURCE_KEY];
  return value === undefined ? null : FrozenSource.parse(value);
}

/** `model.json` of a saved model: tfjs' layers format, with the ModelConfig it was built from. */
export const TfjsModelJson = z.object({
  format: z.string().optional(),
  generatedBy: z.string().optional(),
  convertedBy: z.string().nullable().optional(),
  modelTopology: z.record(z.string(), z.unknown()),
  weightsManifest: z.array(z.object({ paths: z.array(z.string()), weights: z.array(WeightsManifestEntry) })),
  userDefinedMetadata: z.record(z.string(), z.unknown()).optional(),
});
export type TfjsModelJson = z.infer<typeof TfjsModelJson>;

/** GET /v1/jobs/:id/checkpoint while a format is being made on first request (202, with Retry-After). */
export const ConvertingDownload = z.object({
  state: z.literal('converting'),
  detail: z.string(),
  retryAfterSeconds: z.number().int(),
});

/** What each tensor of the backbone took during calibration, by name (`input`, then module paths): its range and channel means. */
export const ActivationRange = z.object({ min: z.number(), max: z.number(), mean: z.array(z.number()) });
export type ActivationRange = z.infer<typeof ActivationRange>;
export const ActivationRanges = z.record(z.string(), ActivationRange);
export type ActivationRanges = z.infer<typeof ActivationRanges>;

/** `<model folder>/int8.json`: what quantises the model's backbone to int8, written only where int8 is offered. */
export const Int8Calibration = z.object({
  calibrationImages: z.number().int().positive(),
  ranges: ActivationRanges,
  residual: ResidualStream,
});
export type Int8Calibration = z.infer<typeof Int8Calibration>;
