import multipart from '@fastify/multipart';
import type { FastifyError, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { InvalidInputError } from '../../../../common/errors.js';
import { PredictQuery, PredictResponse } from '../../../../schemas/predict.js';
import type { JobService } from '../../../jobs/job-service.js';
import { drainBody, HttpProblem } from '../../problem.js';
import { ThreadRpc } from '../../thread-rpc.js';
import type { PredictOutcome, PredictRequest, ThreadSettings } from '../../thread-protocol.js';
import { JobParams } from '../jobs/schemas.js';

/** Per request: images are buffered for the predict thread, so both counts are bounded. */
const PREDICT_LIMITS = { files: 64, fileSize: 32 * 1024 * 1024 };

/** The file parts of a multipart body; a body that is not valid multipart is the client's error (400), not ours. */
async function readImages(request: FastifyRequest): Promise<PredictRequest['images']> {
  const images: PredictRequest['images'] = [];
  try {
    for await (const part of request.files({ limits: PREDICT_LIMITS })) {
      const bytes = await part.toBuffer();
      images.push({ name: part.filename || `${part.fieldname}[${images.length}]`, bytes: new Uint8Array(bytes) });
    }
  } catch (error) {
    if ((error as FastifyError).statusCode) throw error;
    throw InvalidInputError.field('body', `not a readable multipart/form-data body (${(error as Error).message})`);
  }
  return images;
}

/** Top-k classes for uploaded images, with the job's final model, preprocessing and class names. */
const predictRoutes: FastifyPluginAsyncZod<{ jobs: JobService; settings: ThreadSettings }> = async (app, { jobs, settings }) => {
  // Each waiting request holds its images in memory, so the queue is bounded.
  const thread = new ThreadRpc<PredictRequest, PredictOutcome>(new URL('../../threads/predict.thread.ts', import.meta.url), settings, {
    maxPending: 16,
    timeoutMs: 120_000,
  });
  app.addHook('onClose', () => thread.close());
  await app.register(multipart, { limits: PREDICT_LIMITS, throwFileSizeLimit: true });
  app.addHook('onError', async (request, reply) => drainBody(request, reply));

  app.post(
    '/jobs/:id/predict',
    { schema: { params: JobParams, querystring: PredictQuery, response: { 200: PredictResponse } } },
    async (request) => {
      const { topK } = request.query;
      const status = await jobs.completedModel(request.caller, request.params.id);
      if (!request.isMultipart())
        throw new HttpProblem(415, 'Unsupported Media Type', 'send the images as multipart/form-data file fields');
      const images = await readImages(request);
      if (images.length === 0) throw InvalidInputError.field('files', 'at least one image file is required');
      const outcome = await thread.call(
        { jobId: status.id, images, topK },
        images.map((image) => image.bytes.buffer as ArrayBuffer),
      );
      if (!outcome.ok) {
        const errors = outcome.errors.map((e) => ({ path: `files[${e.index}]`, file: e.file, message: e.message }));
        throw new InvalidInputError(errors, 'body', `${errors.length} file(s) could not be decoded as images`);
      }
      return { jobId: status.id, topK, predictions: outcome.predictions };
    },
  );
};
export default predictRoutes;
