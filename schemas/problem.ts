import { z } from 'zod';

/** RFC 9457 problem details, as every error of the API is answered (`application/problem+json`). */
export const Problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    instance: z.string(),
    requestId: z.string(),
    in: z.enum(['body', 'query', 'params', 'headers']).optional().describe('Where the invalid input was'),
    errors: z
      .array(z.looseObject({ path: z.string(), message: z.string() }))
      .optional()
      .describe('Every invalid field, by dotted path'),
  })
  .loose();
export type Problem = z.infer<typeof Problem>;
