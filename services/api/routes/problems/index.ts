import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { NotFoundError } from '../../../../common/errors.js';
import { PROBLEM_TYPES, ProblemType, type ProblemSlug } from '../../../../schemas/problem.js';

/** GET /problems/:slug: what a problem's `type` means, where it points (a relative URI, resolved against this service). */
const problemRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/problems/:slug',
    {
      schema: {
        params: z.object({ slug: z.string().max(64) }),
        response: { 200: ProblemType },
        description: 'A kind of problem the API answers',
      },
    },
    async (request) => {
      const slug = request.params.slug as ProblemSlug;
      const known = Object.hasOwn(PROBLEM_TYPES, slug) ? PROBLEM_TYPES[slug] : undefined;
      if (!known) throw new NotFoundError(`no problem type ${request.params.slug}`);
      return { type: `/problems/${slug}`, ...known };
    },
  );
};
export default problemRoutes;
