import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { RunName, RunTag } from '../../../../schemas/run-labels.js';
import { SweepList, SweepSpec, SweepStatus } from '../../../../schemas/sweep.js';
import type { SweepService } from '../../../sweeps/sweep-service.js';
import { DeleteQuery } from '../jobs/schemas.js';

const SweepParams = z.object({ id: z.string().describe('The sweep id (a UUID)') });
const SweepListQuery = z.strictObject({
  name: RunName.optional().describe('Sweeps of this name'),
  tag: RunTag.optional().describe('Sweeps with this tag'),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

/** Sweeps: submit, list, status, cancel and purge; their trials are ordinary jobs under /v1/jobs. */
const sweepsRoutes: FastifyPluginAsyncZod<{ sweeps: SweepService }> = async (app, { sweeps }) => {
  app.post('/sweeps', { schema: { body: SweepSpec, response: { 202: SweepStatus } } }, async (request, reply) => {
    const status = await sweeps.create(request.caller, request.body);
    return reply.code(202).header('location', status.links.self).send(status);
  });

  app.get('/sweeps', { schema: { querystring: SweepListQuery, response: { 200: SweepList } } }, async (request) =>
    sweeps.list(request.caller, request.query),
  );

  app.get('/sweeps/:id', { schema: { params: SweepParams, response: { 200: SweepStatus } } }, async (request) =>
    sweeps.requireStatus(request.caller, request.params.id),
  );

  app.delete(
    '/sweeps/:id',
    { schema: { params: SweepParams, querystring: DeleteQuery, response: { 202: SweepStatus, 204: z.null() } } },
    async (request, reply) => {
      if (!request.query.purge) return reply.code(202).send(await sweeps.cancel(request.caller, request.params.id));
      await sweeps.purge(request.caller, request.params.id);
      return reply.code(204).send(null);
    },
  );
};
export default sweepsRoutes;
