import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Config } from '../../../schemas/config.js';
import { DatasetSpec } from '../../../schemas/dataset.js';
import type { PreflightReport } from '../../../workers/data/preflight.js';
import type { PreflightRequest } from '../../../workers/data/preflight.thread.js';
import { HttpProblem, parseOrThrow } from '../problem.js';
import { ThreadRpc } from '../thread-rpc.js';

const PreflightBody = z.strictObject({
  dataset: DatasetSpec,
  validationSplit: z.number().min(0).max(0.9).default(0.2),
  seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
  minImagesPerClass: z.number().int().min(1).max(100_000).default(10),
});

/** What a dataset holds and what is wrong with it, without training. */
export function datasetsRoutes(app: FastifyInstance, { config }: { config: Config }): void {
  const thread = new ThreadRpc<PreflightRequest, PreflightReport>(new URL('../../../workers/data/preflight.thread.ts', import.meta.url));
  app.addHook('onClose', () => thread.close());

  app.post('/v1/datasets/preflight', async (request) => {
    const body = parseOrThrow(PreflightBody, request.body, 'body');
    return thread.call({ dataDir: config.DATA_DIR, ...body }).catch((error: Error) => {
      throw new HttpProblem(400, 'Invalid request', error.message.replaceAll(config.DATA_DIR, 'DATA_DIR'), {
        in: 'body',
        errors: [{ path: 'dataset', message: error.message.replaceAll(config.DATA_DIR, 'DATA_DIR') }],
      });
    });
  });
}
