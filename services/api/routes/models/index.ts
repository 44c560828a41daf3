import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { CheckpointFormat, DownloadPrecision } from '../../../../schemas/artifacts.js';
import { AliasName, AliasTarget, ModelAlias, ModelAliasList } from '../../../../schemas/model-alias.js';
import type { ModelExporter } from '../../../jobs/checkpoint-downloads.js';
import type { JobService } from '../../../jobs/job-service.js';
import type { ModelService } from '../../../jobs/model-service.js';
import { allowLongWork } from '../../long-work.js';
import { sendDownload } from '../jobs/download-reply.js';

export const AliasParams = z.object({ name: AliasName.describe('The model alias') });

/** Model aliases: a per-owner name for a job's saved model; predictions through it live with the others (routes/predict). */
const modelsRoutes: FastifyPluginAsyncZod<{ models: ModelService; jobs: JobService; exporter: ModelExporter }> = async (
  app,
  { models, jobs, exporter },
) => {
  app.put(
    '/models/:name',
    { schema: { params: AliasParams, body: AliasTarget, response: { 200: ModelAlias, 201: ModelAlias } } },
    async (request, reply) => {
      const { alias, created } = await models.point(request.caller, request.params.name, request.body);
      return reply
        .code(created ? 201 : 200)
        .header('location', alias.links.self)
        .send(alias);
    },
  );

  app.get('/models', { schema: { response: { 200: ModelAliasList } } }, async (request) => models.list(request.caller));

  app.get('/models/:name', { schema: { params: AliasParams, response: { 200: ModelAlias } } }, async (request) =>
    models.describe(request.caller, request.params.name),
  );

  app.delete('/models/:name', { schema: { params: AliasParams, response: { 204: z.null() } } }, async (request, reply) => {
    await models.remove(request.caller, request.params.name);
    return reply.code(204).send(null);
  });

  app.get(
    '/models/:name/checkpoint',
    {
      schema: {
        params: AliasParams,
        querystring: z.strictObject({ format: CheckpointFormat.default('tar.gz'), precision: DownloadPrecision.default('fp32') }),
      },
    },
    async (request, reply) => {
      const { job, selector } = await models.resolve(request.caller, request.params.name);
      const { format, precision } = request.query;
      allowLongWork(request);
      return sendDownload(
        request,
        reply,
        await jobs.checkpoint(request.caller, job.id, { selector, kind: { format, precision }, exporter }),
        format,
      );
    },
  );
};
export default modelsRoutes;
