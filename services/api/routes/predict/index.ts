import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import multipart from '@fastify/multipart';
import type { FastifyError, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { ConflictError, InvalidInputError, TooLargeError } from '../../../../common/errors.js';
import { PredictQuery, PredictResponse } from '../../../../schemas/predict.js';
import type { ModelService, ResolvedModel } from '../../../jobs/model-service.js';
import { allowLongWork } from '../../long-work.js';
import { drainBody, HttpProblem } from '../../problem.js';
import type { ThreadRpc } from '../../thread-rpc.js';
import type { PredictOutcome, PredictRequest } from '../../thread-protocol.js';
import { JobParams } from '../jobs/schemas.js';
import { AliasParams } from '../models/index.js';

/** Per request: files and their sizes are bounded (each is streamed to a temporary file, never held whole). */
const PREDICT_LIMITS = { files: 64, fileSize: 32 * 1024 * 1024, fields: 16, fieldSize: 1024 };
/**
 * A request's files together: what one request may keep on disk while it waits. An owner holds at
 * most its share of the thread's queue of such requests, so its temporary files are bounded too.
 */
export const PREDICT_MAX_REQUEST_BYTES = 256 * 1024 * 1024;

/**
 * Writes a part to a file. Iterated rather than piped: a body cut off mid-part ends busboy's stream
 * without an end or an error, which a pipeline would wait on forever; iteration sees it close.
 */
async function saveTo(file: string, source: AsyncIterable<Buffer>, room: number, tooLarge: () => Error): Promise<number> {
  const out = createWriteStream(file);
  let written = 0;
  try {
    for await (const chunk of source) {
      written += chunk.length;
      if (written > room) throw tooLarge();
      if (!out.write(chunk)) await once(out, 'drain');
    }
    return written;
  } finally {
    await new Promise((resolve) => out.end(resolve));
  }
}

/**
 * Streams the file parts of a multipart body into `dir`, one file each, for the predict thread to
 * read. A body that is not valid multipart is the client's error (400), not ours.
 */
async function receiveImages(request: FastifyRequest, dir: string): Promise<PredictRequest['images']> {
  const images: PredictRequest['images'] = [];
  let received = 0;
  const tooLarge = () => new TooLargeError(`the images together are larger than ${PREDICT_MAX_REQUEST_BYTES} bytes; send fewer at a time`);
  if (Number(request.headers['content-length'] ?? 0) > PREDICT_MAX_REQUEST_BYTES + 1024 * 1024) throw tooLarge();
  try {
    for await (const part of request.files({ limits: PREDICT_LIMITS })) {
      const file = path.join(dir, String(images.length));
      received += await saveTo(file, part.file, PREDICT_MAX_REQUEST_BYTES - received, tooLarge);
      if (part.file.truncated)
        throw new TooLargeError(`${part.filename || part.fieldname} is larger than ${PREDICT_LIMITS.fileSize} bytes`);
      images.push({ name: part.filename || `${part.fieldname}[${images.length}]`, path: file });
    }
  } catch (error) {
    if ((error as FastifyError).statusCode || error instanceof TooLargeError) throw error;
    throw InvalidInputError.field('body', `not a readable multipart/form-data body (${(error as Error).message})`);
  }
  return images;
}

/** Receives the images, then runs them through the model in the predict thread, holding a place in its queue meanwhile. */
async function predictWith(
  request: FastifyRequest,
  predictions: ThreadRpc<PredictRequest, PredictOutcome>,
  { job, model }: ResolvedModel,
  { topK, precision }: PredictQuery,
): Promise<PredictResponse> {
  if (!request.isMultipart()) throw new HttpProblem(415, 'Unsupported Media Type', 'send the images as multipart/form-data file fields');
  // A place in the thread's queue before the images arrive: the files a request keeps wait in it.
  const place = predictions.reserve(request.caller);
  const dir = await mkdtemp(path.join(tmpdir(), 'retrain-predict-upload-'));
  try {
    const images = await receiveImages(request, dir);
    if (images.length === 0) throw InvalidInputError.field('files', 'at least one image file is required');
    allowLongWork(request);
    const outcome = await place.send({ jobId: job.id, folder: model.folder, images, topK, precision });
    if (!outcome.ok && 'unavailable' in outcome) throw new ConflictError(outcome.unavailable, { field: 'precision' });
    if (!outcome.ok) {
      const errors = outcome.errors.map((e) => ({ path: `files[${e.index}]`, file: e.file, message: e.message }));
      throw new InvalidInputError(errors, 'body', `${errors.length} file(s) could not be decoded as images`);
    }
    return { jobId: job.id, model: model.label, topK, precision: outcome.precision, predictions: outcome.predictions };
  } finally {
    place.release();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Top-k classes for uploaded images, with a job's final model or the model an alias names, their preprocessing and class names. */
const predictRoutes: FastifyPluginAsyncZod<{ models: ModelService; predictions: ThreadRpc<PredictRequest, PredictOutcome> }> = async (
  app,
  { models, predictions },
) => {
  await app.register(multipart, { limits: PREDICT_LIMITS, throwFileSizeLimit: true });
  app.addHook('onError', async (request, reply, error) => drainBody(request, reply, error));

  app.post(
    '/jobs/:id/predict',
    { schema: { params: JobParams, querystring: PredictQuery, response: { 200: PredictResponse } } },
    async (request) => predictWith(request, predictions, await models.ofJob(request.caller, request.params.id), request.query),
  );

  app.post(
    '/models/:name/predict',
    { schema: { params: AliasParams, querystring: PredictQuery, response: { 200: PredictResponse } } },
    async (request) => predictWith(request, predictions, await models.resolve(request.caller, request.params.name), request.query),
  );
};
export default predictRoutes;
