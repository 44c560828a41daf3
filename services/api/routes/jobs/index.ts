import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ConvertingDownload } from '../../../../schemas/artifacts.js';
import { PreflightReport } from '../../../../schemas/dataset.js';
import { JobSpec } from '../../../../schemas/job-spec.js';
import { JobList, JobStatus } from '../../../../schemas/job-status.js';
import { Metrics } from '../../../../schemas/metrics.js';
import type { CheckpointSelector, ModelExporter } from '../../../jobs/checkpoint-downloads.js';
import type { JobService } from '../../../jobs/job-service.js';
import { allowLongWork } from '../../long-work.js';
import { sendDownload } from './download-reply.js';
import { sendSummary, SummaryQuery } from '../summary/reply.js';
import { CheckpointQuery, DeleteQuery, JobParams, ListQuery, SubmitHeaders, ValidationImageParams } from './schemas.js';

/** A job's files: checkpoints in every format, and the thumbnails of its held-out images. */
const jobFileRoutes: FastifyPluginAsyncZod<{ jobs: JobService; exporter: ModelExporter }> = async (app, { jobs, exporter }) => {
  app.get(
    '/jobs/:id/checkpoint',
    {
      schema: {
        params: JobParams,
        querystring: CheckpointQuery,
        response: {
          200: z.unknown().describe('The file (tar.gz, safetensors or ONNX), with an ETag'),
          202: ConvertingDownload.describe('A format made on first request is being made: ask again after Retry-After seconds'),
          304: z.null().describe('Not modified (If-None-Match)'),
        },
      },
    },
    async (request, reply) => {
      const { epoch, format, precision } = request.query;
      const selector: CheckpointSelector = typeof epoch === 'number' ? { kind: 'epoch', epoch } : { kind: epoch };
      allowLongWork(request);
      const download = await jobs.checkpoint(request.caller, request.params.id, { selector, kind: { format, precision }, exporter });
      return sendDownload(request, reply, download, format);
    },
  );

  app.get(
    '/jobs/:id/validation-images/:index',
    {
      schema: {
        params: ValidationImageParams,
        description: "A JPEG thumbnail of the held-out image at this index of the metrics' validationPredictions",
      },
    },
    async (request, reply) => {
      const image = await jobs.validationImage(request.caller, request.params.id, request.params.index);
      // Written once when the job ends: a browser may keep it.
      return reply.type('image/jpeg').header('cache-control', 'private, max-age=86400, immutable').send(image);
    },
  );
};

/** Jobs: submit, list, status, cancel, and their results (summary, metrics, preflight, checkpoints). */
const jobsRoutes: FastifyPluginAsyncZod<{ jobs: JobService; exporter: ModelExporter }> = async (app, { jobs, exporter }) => {
  app.post(
    '/jobs',
    { schema: { body: JobSpec, headers: SubmitHeaders, response: { 200: JobStatus, 202: JobStatus } } },
    async (request, reply) => {
      const { status, created } = await jobs.submit(request.caller, request.body, request.headers['idempotency-key']);
      return reply
        .code(created ? 202 : 200)
        .header('location', status.links.self)
        .send(status);
    },
  );

  app.get('/jobs', { schema: { querystring: ListQuery, response: { 200: JobList } } }, async (request) =>
    jobs.list(request.caller, request.query),
  );

  app.get('/jobs/:id', { schema: { params: JobParams, response: { 200: JobStatus } } }, async (request) =>
    jobs.requireStatus(request.caller, request.params.id),
  );

  app.delete(
    '/jobs/:id',
    { schema: { params: JobParams, querystring: DeleteQuery, response: { 202: JobStatus, 204: z.null() } } },
    async (request, reply) => {
      if (!request.query.purge) return reply.code(202).send(await jobs.cancel(request.caller, request.params.id));
      await jobs.purge(request.caller, request.params.id);
      return reply.code(204).send(null);
    },
  );

  app.get('/jobs/:id/summary', { schema: { params: JobParams, querystring: SummaryQuery } }, async (request, reply) =>
    sendSummary(request, reply, await jobs.summary(request.caller, request.params.id), request.query.depth),
  );

  app.get('/jobs/:id/metrics', { schema: { params: JobParams, response: { 200: Metrics } } }, async (request) =>
    jobs.metrics(request.caller, request.params.id),
  );

  app.get('/jobs/:id/preflight', { schema: { params: JobParams, response: { 200: PreflightReport } } }, async (request) =>
    jobs.preflight(request.caller, request.params.id),
  );

  await app.register(jobFileRoutes, { jobs, exporter });
};
export default jobsRoutes;
