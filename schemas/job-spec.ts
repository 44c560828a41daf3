import { z } from 'zod';
import { DatasetSpec } from './dataset.js';
import { FineTuningOptions, InputSize } from './model.js';

export const Optimizer = z.strictObject({
  type: z.enum(['adam', 'sgd']).default('adam'),
  learningRate: z.number().positive().max(10).default(1e-3),
  momentum: z.number().min(0).max(0.999).default(0.9).describe('SGD momentum; ignored by adam'),
  weightDecay: z.number().min(0).max(1).default(0).describe('L2 penalty added to the gradient, as torch.optim does'),
});

const shared = {
  dataset: DatasetSpec,
  weights: z.enum(['imagenet', 'random']).default('imagenet').describe('imagenet reads IMAGENET_WEIGHTS; random is explicit'),
  inputSize: InputSize.default(224),
  batchSize: z.number().int().min(1).max(256).default(16),
  validationSplit: z.number().min(0).max(0.9).default(0.2).describe('Fraction of each class held out (stratified)'),
  seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
};

const training = {
  epochs: z.number().int().min(1).max(1000).default(10),
  optimizer: Optimizer.default({ type: 'adam', learningRate: 1e-3, momentum: 0.9, weightDecay: 0 }),
};

/** Evaluates the ImageNet model as is: no epochs, no optimiser. */
export const PretrainedJobSpec = z.strictObject({ mode: z.literal('pretrained'), ...shared });
export const FeatureExtractionJobSpec = z.strictObject({ mode: z.literal('feature_extraction'), ...shared, ...training });
export const FineTuningJobSpec = z.strictObject({
  mode: z.literal('fine_tuning'),
  ...shared,
  ...training,
  fineTuning: FineTuningOptions.default({ trainableFrom: 'conv1', freezeBatchNorm: true }),
});

export const JobSpec = z.discriminatedUnion('mode', [PretrainedJobSpec, FeatureExtractionJobSpec, FineTuningJobSpec]);
export type JobSpec = z.infer<typeof JobSpec>;
export type TrainingJobSpec = Exclude<JobSpec, { mode: 'pretrained' }>;
export const isTrainingSpec = (spec: JobSpec): spec is TrainingJobSpec => spec.mode !== 'pretrained';
