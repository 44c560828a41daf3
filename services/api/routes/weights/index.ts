import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { WeightsCatalog } from '../../../../common/weights-catalog.js';
import { WeightsList } from '../../../../schemas/weights.js';

/** GET /v1/weights: every variant a job may name in `weights`, whether the store holds it yet, and what it is. */
const weightsRoutes: FastifyPluginAsyncZod<{ catalog: WeightsCatalog }> = async (app, { catalog }) => {
  app.get(
    '/weights',
    {
      schema: {
        response: { 200: WeightsList },
        description: 'Weight variants: present in the artifact store (a job uses them at once) or fetched on first use',
      },
    },
    async () => ({ items: await catalog.list() }),
  );
};
export default weightsRoutes;
