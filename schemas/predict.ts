import { z } from 'zod';
import { Precision } from './model.js';

export const PredictQuery = z.strictObject({
  topK: z.coerce.number().int().min(1).max(1000).default(5).describe('Classes per image, most probable first'),
  precision: Precision.default('fp32').describe(
    "bf16: the convolutions in bfloat16 (oneDNN, on CPUs with AVX512-BF16 or AMX); elsewhere fp32 runs and the answer's precision says so",
  ),
});
export type PredictQuery = z.infer<typeof PredictQuery>;

export const ClassScore = z.object({ index: z.number().int(), className: z.string(), probability: z.number() });
export type ClassScore = z.infer<typeof ClassScore>;

export const ImagePrediction = z.object({ file: z.string(), top: z.array(ClassScore) });
export type ImagePrediction = z.infer<typeof ImagePrediction>;

/** POST /v1/jobs/:id/predict: the top-k classes of each uploaded image, in upload order. */
export const PredictResponse = z.object({
  jobId: z.uuid(),
  model: z.string().describe('Which saved model of the job answered: final, or epoch-N'),
  topK: z.number().int(),
  precision: Precision.describe('The precision the convolutions ran in'),
  predictions: z.array(ImagePrediction),
});
export type PredictResponse = z.infer<typeof PredictResponse>;
