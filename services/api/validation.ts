import type { FastifySchemaCompiler } from 'fastify';
import type { z } from 'zod';
import { fieldErrorsOf, InvalidInputError, type InputLocation } from '../../common/errors.js';

const LOCATIONS: Record<string, InputLocation> = { body: 'body', querystring: 'query', params: 'params', headers: 'headers' };

/**
 * Fastify validates each route's params, query, headers and body with the zod schemas it declares;
 * a failure is an InvalidInputError naming every field, answered by the one problem handler.
 */
export const zodValidatorCompiler: FastifySchemaCompiler<z.ZodType> =
  ({ schema, httpPart }) =>
  (data) => {
    const result = schema.safeParse(data, { reportInput: true });
    if (result.success) return { value: result.data };
    return { error: new InvalidInputError(fieldErrorsOf(result.error), LOCATIONS[httpPart ?? 'body'] ?? 'body') };
  };
