import { z } from 'zod';

export const TransferMode = z.enum(['pretrained', 'feature_extraction', 'fine_tuning']).describe('How the ImageNet ResNet-50 is used');
export type TransferMode = z.infer<typeof TransferMode>;

export const Stage = z.enum(['conv1', 'layer1', 'layer2', 'layer3', 'layer4']);

export const InputSize = z
  .number()
  .int()
  .min(32)
  .max(512)
  .multipleOf(16, { message: 'inputSize must be a multiple of 16 from 32 to 512' })
  .describe('Square input side in pixels; torchvision weights were trained at 224');

export const NumClasses = z.number().int().min(2).max(10_000);

export const FineTuningOptions = z.strictObject({
  trainableFrom: Stage.default('conv1').describe('First stage that trains; conv1 = the whole network'),
  freezeBatchNorm: z.boolean().default(true).describe('Keep BatchNorm in inference mode with its ImageNet statistics'),
});

export const SummaryDepth = z.coerce.number().int().min(0).max(3).default(3);
