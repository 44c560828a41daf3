import { z } from 'zod';

/** What a prediction's backbone runs in. */
export const PredictPrecision = z.enum(['fp32', 'bf16', 'int8']);
export type PredictPrecision = z.infer<typeof PredictPrecision>;

export const PredictQuery = z.strictObject({
  topK: z.coerce.number().int().min(1).max(1000).default(5).describe('Classes per image, most probable first'),
  precision: PredictPrecision.optional().describe(
    "int8: the backbone quantised (oneDNN's int8 convolutions), offered for a job's final model where the job found it agrees with fp32 " +
      '(metrics.int8), else 409; bf16: the convolutions in bfloat16 on CPUs with AVX512-BF16 or AMX (elsewhere fp32 runs); fp32. ' +
      "Unset: the fastest offered for the model on this host (int8, then bf16, then fp32). The answer's precision says which ran",
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
  precision: PredictPrecision.describe('The precision the backbone ran in'),
  predictions: z.array(ImagePrediction),
});
export type PredictResponse = z.infer<typeof PredictResponse>;
