import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { JobSpec } from '../../../schemas/job-spec.js';
import { JobState, Metrics } from '../../../schemas/job-status.js';
import { SummaryDepth } from '../../../schemas/model.js';
import { renderSummaryText, summaryAtDepth, type ModelSummary } from '../../../workers/model/summary.js';
import { jobKeys, type ArtifactStore } from '../../artifacts/artifact-store.js';
import { checkpointDownload, NotAvailableError, type CheckpointSelector } from '../../artifacts/downloads.js';
import type { JobService } from '../../jobs/job-service.js';
import { HttpProblem, parseOrThrow } from '../problem.js';

export interface JobsRoutesDeps {
  jobs: JobService;
  store: ArtifactStore;
}

const JobParams = z.object({ id: z.string() });
const ListQuery = z.strictObject({
  state: JobState.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});
const SummaryQuery = z.strictObject({ depth: SummaryDepth });
const CheckpointQuery = z.strictObject({
  epoch: z.union([z.enum(['latest', 'final', 'best']), z.coerce.number().int().min(1).max(100_000)]).default('final'),
  format: z.enum(['tar.gz', 'safetensors']).default('tar.gz'),
});
const IdempotencyKey = z.string().min(1).max(255).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function notFound(id: string): HttpProblem {
  return new HttpProblem(404, 'Not Found', `no job with id ${id}`);
}

/** Wants the plain-text table only when the client asks for text and not for JSON first. */
function wantsText(request: FastifyRequest): boolean {
  const accept = request.headers.accept ?? '';
  return accept.includes('text/plain') && !/^application\/(json|\*)/.test(accept);
}

export function jobsRoutes(app: FastifyInstance, { jobs, store }: JobsRoutesDeps): void {
  const requireJob = async (request: FastifyRequest) => {
    const { id } = parseOrThrow(JobParams, request.params, 'params');
    const job = UUID.test(id) ? await jobs.find(id) : undefined;
    if (!job) throw notFound(id);
    return job;
  };

  app.post('/v1/jobs', async (request, reply) => {
    const spec = parseOrThrow(JobSpec, request.body, 'body');
    const rawKey = request.headers['idempotency-key'];
    const key = rawKey === undefined ? undefined : parseOrThrow(IdempotencyKey, rawKey, 'body');
    const { status, created } = await jobs.submit(spec, key);
    return reply.code(created ? 202 : 200).header('location', status.links.self).send(status);
  });

  app.get('/v1/jobs', async (request) => jobs.list(parseOrThrow(ListQuery, request.query, 'query')));

  app.get('/v1/jobs/:id', async (request) => jobs.describe(await requireJob(request)));

  app.delete('/v1/jobs/:id', async (request, reply) => {
    const job = await requireJob(request);
    return reply.code(202).send(await jobs.cancel(job.id!));
  });

  app.get('/v1/jobs/:id/summary', async (request, reply) => {
    const { depth } = parseOrThrow(SummaryQuery, request.query, 'query');
    const job = await requireJob(request);
    const key = jobKeys(job.id!).summary;
    if (!(await store.stat(key))) {
      throw new HttpProblem(409, 'Conflict', 'the summary is written when the job starts; this job has not started yet');
    }
    const summary = summaryAtDepth(JSON.parse((await store.read(key)).toString('utf8')) as ModelSummary, depth);
    return sendSummary(request, reply, summary);
  });

  app.get('/v1/jobs/:id/metrics', async (request) => {
    const job = await requireJob(request);
    const key = jobKeys(job.id!).metrics;
    if (!(await store.stat(key))) return { classNames: [], epochs: [], evaluation: null, report: null, validationPredictions: [] } satisfies Metrics;
    return JSON.parse((await store.read(key)).toString('utf8')) as Metrics;
  });

  app.get('/v1/jobs/:id/checkpoint', async (request, reply) => {
    const { epoch, format } = parseOrThrow(CheckpointQuery, request.query, 'query');
    const job = await requireJob(request);
    const selector: CheckpointSelector = typeof epoch === 'number' ? { kind: 'epoch', epoch } : { kind: epoch };
    const download = await checkpointDownload(store, job.id!, selector, format).catch((error: unknown) => {
      if (error instanceof NotAvailableError) throw new HttpProblem(404, 'Not Found', error.message);
      throw error;
    });
    const etag = `"${download.etag}"`;
    reply.header('etag', etag).header('cache-control', 'private, max-age=0, must-revalidate');
    if (request.headers['if-none-match'] === etag) return reply.code(304).send();
    return reply
      .header('content-type', download.contentType)
      .header('content-length', download.size)
      .header('content-disposition', `attachment; filename="${download.filename}"`)
      .send(store.createReadStream(download.key));
  });
}

export function sendSummary(request: FastifyRequest, reply: FastifyReply, summary: ModelSummary) {
  if (wantsText(request)) return reply.type('text/plain; charset=utf-8').send(renderSummaryText(summary));
  return reply.send(summary);
}
