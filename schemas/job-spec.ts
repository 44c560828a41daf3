import { z } from 'zod';
import { DatasetSpec, Seed, ValidationSplit } from './dataset.js';
import { FineTuningOptions, InputSize, RequestedPrecision } from './model.js';
import { RunName, RunTags } from './run-labels.js';
import { WeightsSpec } from './weights.js';

export const Optimizer = z.strictObject({
  type: z.enum(['adam', 'sgd']).default('adam'),
  learningRate: z.number().positive().max(10).default(1e-3),
  momentum: z.number().min(0).max(0.999).default(0.9).describe('SGD momentum; ignored by adam'),
  weightDecay: z.number().min(0).max(1).default(0).describe('L2 penalty added to the gradient, as torch.optim does'),
});

const shared = {
  name: RunName.optional().describe('Find the job again by it: GET /v1/jobs?name='),
  tags: RunTags.describe('GET /v1/jobs?tag= lists the jobs with a tag'),
  weights: WeightsSpec.default('imagenet'),
  inputSize: InputSize.default(224),
  batchSize: z.number().int().min(1).max(256).default(16),
  validationSplit: ValidationSplit,
  seed: Seed.describe('Fixes initialisation, split, shuffles, augmentation and dropout'),
  precision: RequestedPrecision.default('auto').describe(
    'bf16: convolutions read bfloat16 copies of activations and filters (float32 accumulation; weights and optimiser state stay ' +
      'float32), through the oneDNN kernels on CPUs with AVX512-BF16; elsewhere the job runs in fp32, says so in its log, and ' +
      'status.backend.precision tells which ran. auto (the default): bf16 where the worker can, else fp32, without a warning',
  ),
};

export const Schedule = z.strictObject({
  type: z.enum(['constant', 'step', 'cosine']).default('constant'),
  stepSize: z.number().int().min(1).max(1000).default(10).describe('step: epochs between decays'),
  gamma: z.number().gt(0).max(1).default(0.1).describe('step: factor per decay'),
  minLearningRate: z.number().min(0).default(0).describe('cosine: the floor'),
  warmupEpochs: z.number().int().min(0).max(100).default(0).describe('linear warm-up to learningRate over these first epochs'),
});

export const EarlyStopping = z.strictObject({
  patience: z.number().int().min(1).max(1000).describe('epochs without improvement before stopping'),
  monitor: z.enum(['validation_loss', 'validation_accuracy']).default('validation_loss'),
  minDelta: z.number().min(0).default(0),
});

export const Augmentation = z.strictObject({
  randomResizedCrop: z.boolean().default(true).describe("torchvision's RandomResizedCrop(scale, ratio) instead of resize + center crop"),
  horizontalFlip: z.boolean().default(true),
  scale: z.tuple([z.number().gt(0).max(1), z.number().gt(0).max(1)]).default([0.08, 1]),
  ratio: z.tuple([z.number().gt(0).max(10), z.number().gt(0).max(10)]).default([3 / 4, 4 / 3]),
});
export type Augmentation = z.infer<typeof Augmentation>;

export const CheckpointPolicy = z.strictObject({
  keepEveryN: z
    .number()
    .int()
    .min(0)
    .max(1000)
    .default(0)
    .describe('also keep every Nth epoch (0: none); the latest and the best epoch are always kept'),
});

const training = {
  dataset: DatasetSpec,
  augmentation: Augmentation.default({ randomResizedCrop: true, horizontalFlip: true, scale: [0.08, 1], ratio: [3 / 4, 4 / 3] }).describe(
    'Training images only; with any augmentation on, feature_extraction runs the backbone every epoch instead of caching CNN codes',
  ),
  epochs: z.number().int().min(1).max(1000).default(10),
  optimizer: Optimizer.default({ type: 'adam', learningRate: 1e-3, momentum: 0.9, weightDecay: 0 }),
  schedule: Schedule.default({ type: 'constant', stepSize: 10, gamma: 0.1, minLearningRate: 0, warmupEpochs: 0 }),
  earlyStopping: EarlyStopping.optional().describe('stop when the monitored validation metric stops improving; the best epoch is kept'),
  classWeights: z
    .union([z.literal('balanced'), z.array(z.number().positive().max(1e6)).min(2).max(10_000)])
    .optional()
    .describe('balanced = n / (classes x count of the class), as scikit-learn; or one weight per class, in class order'),
  labelSmoothing: z.number().min(0).max(0.5).default(0),
  checkpoints: CheckpointPolicy.default({ keepEveryN: 0 }).describe(
    'Epoch checkpoints kept: the latest (with the optimiser state, to resume from), the best, and every Nth (weights only); the others are removed as training goes',
  ),
};

/** The ImageNet model as is: summary, export and predictions; evaluated on a dataset when one is given. */
export const PretrainedJobSpec = z.strictObject({
  mode: z.literal('pretrained'),
  dataset: DatasetSpec.optional().describe('Evaluated on when given (accuracy where class folders are named as ImageNet classes)'),
  ...shared,
});
export const FeatureExtractionJobSpec = z.strictObject({ mode: z.literal('feature_extraction'), ...shared, ...training });
export const FineTuningJobSpec = z.strictObject({
  mode: z.literal('fine_tuning'),
  ...shared,
  ...training,
  fineTuning: FineTuningOptions.default({ trainableFrom: 'conv1', freezeBatchNorm: true }),
});

export const JobSpec = z
  .discriminatedUnion('mode', [PretrainedJobSpec, FeatureExtractionJobSpec, FineTuningJobSpec])
  .superRefine((spec, context) => {
    if (spec.mode === 'pretrained' || !Array.isArray(spec.classWeights) || spec.dataset.type !== 'synthetic') return;
    if (spec.classWeights.length !== spec.dataset.numClasses) {
      context.addIssue({
        code: 'custom',
        path: ['classWeights'],
        message: `classWeights has ${spec.classWeights.length} weights for ${spec.dataset.numClasses} classes`,
      });
    }
  });
export type JobSpec = z.infer<typeof JobSpec>;
export type TrainingJobSpec = Exclude<JobSpec, { mode: 'pretrained' }>;
export const isTrainingSpec = (spec: JobSpec): spec is TrainingJobSpec => spec.mode !== 'pretrained';
