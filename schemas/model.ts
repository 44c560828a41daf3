import { z } from 'zod';
import { WeightsLineage } from './weights.js';

export const TransferMode = z.enum(['pretrained', 'feature_extraction', 'fine_tuning']).describe('How the ImageNet ResNet-50 is used');
export type TransferMode = z.infer<typeof TransferMode>;

/** torchvision's top-level stages in forward order; `conv1` stands for the stem (conv1, bn1, maxpool). */
export const Stage = z.enum(['conv1', 'layer1', 'layer2', 'layer3', 'layer4']);
export type Stage = z.infer<typeof Stage>;

export const INPUT_SIZE_RULE = 'inputSize must be a multiple of 16 from 32 to 512';
export const InputSize = z
  .number()
  .int()
  .min(32, INPUT_SIZE_RULE)
  .max(512, INPUT_SIZE_RULE)
  .multipleOf(16, INPUT_SIZE_RULE)
  .describe('Square input side in pixels; torchvision weights were trained at 224');

export const IMAGENET_CLASSES = 1000;
export const NumClasses = z.number().int().min(2).max(10_000);

export const FineTuningOptions = z.strictObject({
  trainableFrom: Stage.default('conv1').describe('First stage that trains; conv1 = the whole network'),
  freezeBatchNorm: z.boolean().default(true).describe('Keep BatchNorm in inference mode with its ImageNet statistics'),
});

/** What builds one ResNet-50 variant; stored in every checkpoint, so a model can be rebuilt from it. */
export const ModelConfig = z
  .strictObject({
    mode: TransferMode,
    numClasses: NumClasses.describe("Classes of the head; pretrained keeps ImageNet's 1000"),
    inputSize: InputSize,
    fineTuning: z.strictObject({ trainableFrom: Stage, freezeBatchNorm: z.boolean() }).optional(),
    seed: z.number().int().min(0).optional().describe('Seeds the random initialisation'),
  })
  .superRefine((config, context) => {
    if (config.mode === 'pretrained' && config.numClasses !== IMAGENET_CLASSES) {
      context.addIssue({ code: 'custom', path: ['numClasses'], message: `pretrained keeps ImageNet's ${IMAGENET_CLASSES}-class head` });
    }
    if (config.mode !== 'fine_tuning' && config.fineTuning) {
      context.addIssue({ code: 'custom', path: ['fineTuning'], message: `fineTuning applies only to fine_tuning, not ${config.mode}` });
    }
  });
export type ModelConfig = z.infer<typeof ModelConfig>;

export const MAX_SUMMARY_DEPTH = 3;
export const SummaryDepth = z.coerce.number().int().min(0).max(MAX_SUMMARY_DEPTH).default(MAX_SUMMARY_DEPTH);

export const SummaryRow = z.object({
  depth: z.number().int(),
  depthIndex: z.string().describe('torchinfo\'s depth-idx, e.g. "2-4"; empty for the model row'),
  type: z.string(),
  varName: z.string(),
  name: z.string().describe('torchvision module path, e.g. "layer2.0.conv2" (state_dict key prefix)'),
  outputShape: z.array(z.number().int()),
  params: z.number().int(),
  trainableParams: z.number().int(),
  showsParams: z.boolean().describe('torchinfo prints "--" instead of a count for an expanded container'),
});
export type SummaryRow = z.infer<typeof SummaryRow>;

/** torchinfo's table for one model, as JSON: rows to `depth`, then totals and size estimates. */
export const ModelSummary = z.object({
  mode: TransferMode,
  inputSize: z.number().int(),
  numClasses: z.number().int(),
  depth: z.number().int().min(0).max(MAX_SUMMARY_DEPTH),
  rows: z.array(SummaryRow),
  totals: z.object({
    totalParams: z.number().int(),
    trainableParams: z.number().int(),
    nonTrainableParams: z.number().int(),
    multAdds: z.number().int(),
    inputBytes: z.number().int(),
    forwardBackwardPassBytes: z.number().int(),
    paramsBytes: z.number().int(),
    estimatedTotalBytes: z.number().int(),
    inputSizeMB: z.number(),
    forwardBackwardPassSizeMB: z.number(),
    paramsSizeMB: z.number(),
    estimatedTotalSizeMB: z.number(),
  }),
  weights: WeightsLineage.optional().describe("A job's summary: where the weights it started from came from"),
});
export type ModelSummary = z.infer<typeof ModelSummary>;

/** Preference order at worker start: the first that loads wins unless TFJS_BACKEND names one. */
export const BackendChoice = z.enum(['node-gpu', 'node', 'wasm', 'cpu']);
export type BackendChoice = z.infer<typeof BackendChoice>;

export const Precision = z.enum(['fp32', 'bf16']);
export type Precision = z.infer<typeof Precision>;
/**
 * Where an int8 backbone keeps its residual stream (every block's output): u8 (the fastest), or float32,
 * rounded to u8 only where a convolution reads it (rounding errors do not pile up along the identity path).
 */
export const ResidualStream = z.enum(['int8', 'fp32']);
export type ResidualStream = z.infer<typeof ResidualStream>;

/** What a job may ask for: a precision, or `auto` (bf16 where this host's kernels run it, else fp32). */
export const RequestedPrecision = z.enum(['fp32', 'bf16', 'auto']);
export type RequestedPrecision = z.infer<typeof RequestedPrecision>;

export const BackendReport = z.object({
  choice: BackendChoice,
  backend: z.string().describe('tfjs backend name (`tensorflow` for both native packages)'),
  package: z.string(),
  version: z.string(),
  kernels: z.string().describe('What runs the convolutions and matmuls: "onednn 2.6.3" (native, on wasm), "wasm", "tensorflow" or "cpu"'),
  precision: Precision.optional().describe("What a job's convolutions read: fp32, or bf16 where it asked for and got it"),
});
export type BackendReport = z.infer<typeof BackendReport>;

/** What the worker's backend probe prints: the report, and why wasm runs without the oneDNN kernels if it does. */
export const BackendProbe = BackendReport.extend({ nativeKernelsMissing: z.string().optional() });
export type BackendProbe = z.infer<typeof BackendProbe>;

/** The evaluation transform: resize the shorter side, center-crop, normalise per channel. */
export const Preprocessing = z.object({
  resize: z.number().int(),
  crop: z.number().int(),
  interpolation: z.literal('bilinear'),
  mean: z.array(z.number()).length(3),
  std: z.array(z.number()).length(3),
});
export type Preprocessing = z.infer<typeof Preprocessing>;
