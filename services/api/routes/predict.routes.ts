import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Config } from '../../../schemas/config.js';
import type { PredictRequest, PredictResponse } from '../../../workers/inference/predict.thread.js';
import type { JobService } from '../../jobs/job-service.js';
import { drainBody, HttpProblem, parseOrThrow } from '../problem.js';
import { ThreadRpc } from '../thread-rpc.js';

const PredictQuery = z.strictObject({ topK: z.coerce.number().int().min(1).max(1000).default(5) });
export const PREDICT_LIMITS = { files: 64, fileSize: 32 * 1024 * 1024 };

/** Top-k classes for uploaded images, with the job's final model, preprocessing and class names. */
export function predictRoutes(app: FastifyInstance, { jobs, config }: { jobs: JobService; config: Config }): void {
  const thread = new ThreadRpc<PredictRequest, PredictResponse>(new URL('../../../workers/inference/predict.thread.ts', import.meta.url));
  app.addHook('onClose', () => thread.close());

  app.post('/v1/jobs/:id/predict', async (request, reply) => {
    try {
      return await predict(request);
    } catch (error) {
      await drainBody(request, reply);
      throw error;
    }
  });

  async function predict(request: FastifyRequest) {
    const { topK } = parseOrThrow(PredictQuery, request.query, 'query');
    const { id } = request.params as { id: string };
    const status = await jobs.status(id).catch(() => null);
    if (!status) throw new HttpProblem(404, 'Not Found', `no job with id ${id}`);
    if (status.state !== 'completed') {
      throw new HttpProblem(409, 'Conflict', `predictions need the final model of a completed job; this job is ${status.state}`, { state: status.state });
    }
    if (!request.isMultipart()) throw new HttpProblem(415, 'Unsupported Media Type', 'send the images as multipart/form-data file fields');
    const images: PredictRequest['images'] = [];
    for await (const part of request.files({ limits: PREDICT_LIMITS })) {
      const bytes = await part.toBuffer();
      images.push({ name: part.filename || `${part.fieldname}[${images.length}]`, bytes: new Uint8Array(bytes) });
    }
    if (images.length === 0) {
      throw new HttpProblem(400, 'Invalid request', 'no image files in the multipart body', { in: 'body', errors: [{ path: 'files', message: 'at least one image file is required' }] });
    }
    const response = await thread.call(
      { artifactsDir: config.ARTIFACTS_DIR, jobId: status.id, images, topK: Math.min(topK, 1000) },
      images.map((image) => image.bytes.buffer as ArrayBuffer),
    );
    if (!response.ok) {
      throw new HttpProblem(400, 'Invalid request', `${response.errors.length} file(s) could not be decoded as images`, {
        in: 'body',
        errors: response.errors.map((e) => ({ path: `files[${e.index}]`, file: e.file, message: e.message })),
      });
    }
    return { jobId: status.id, topK, predictions: response.predictions };
  }
}
