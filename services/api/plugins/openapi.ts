import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { Problem } from '../../../schemas/problem.js';
import type { AuthMode } from './auth.js';

const PROBLEM = {
  description: 'An RFC 9457 problem (application/problem+json) naming every invalid field',
  content: { 'application/problem+json': { schema: z.toJSONSchema(Problem, { target: 'draft-2020-12' }) } },
};

type Transform = typeof jsonSchemaTransform;

/** The zod schemas as JSON Schema, and on every route the problem+json answers that any route may give. */
const withProblems: Transform = (input) => {
  if (input.schema?.hide) return { schema: input.schema, url: input.url };
  const { schema, url } = jsonSchemaTransform({ ...input, schema: input.schema ?? {} });
  const response = { ...((schema as { response?: object }).response ?? {}), '4XX': PROBLEM, '5XX': PROBLEM };
  return { schema: { ...schema, response }, url };
};

/**
 * The OpenAPI 3.1 document, generated from the zod schemas the routes declare, at GET /openapi.json,
 * and Swagger UI at /docs (its assets come from the installed package: no network). Register before
 * the routes: the document collects them as they are added.
 */
export async function registerOpenApi(app: FastifyInstance, mode: AuthMode, version: string): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'retrain',
        version,
        description: 'Transfer learning from an ImageNet ResNet-50: jobs, datasets, checkpoints, predictions, live events.',
      },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'An API key, or ADMIN_API_KEY' } } },
      security: mode === 'api-keys' ? [{ apiKey: [] }] : [],
    },
    transform: withProblems,
  });
  // staticCSP: its pages carry a Content-Security-Policy naming their own scripts' hashes.
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
