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

/**
 * Every kind of problem the API answers, by the slug its `type` URI ends in (`/problems/<slug>`, served
 * by the API itself): what it means and what to do. Looked up by title, then by status: the first of a
 * status is its generic kind.
 */
export const PROBLEM_TYPES = {
  'bad-request': {
    status: 400,
    title: 'Bad Request',
    description: 'The request cannot be read (a malformed URL, body or archive): `detail` says what.',
  },
  'invalid-request': {
    status: 400,
    title: 'Invalid request',
    description: 'A field is missing or not valid: `errors` names each, by path, and `in` says where.',
  },
  unauthorized: {
    status: 401,
    title: 'Unauthorized',
    description: 'Send an API key as `Authorization: Bearer <key>` (operators make them with `retrain keys create`).',
  },
  forbidden: {
    status: 403,
    title: 'Forbidden',
    description: 'The request may not do this: a page of another site changing a single-user service, say.',
  },
  'not-found': { status: 404, title: 'Not Found', description: "No such resource for this caller (another owner's is not found either)." },
  'method-not-allowed': { status: 405, title: 'Method Not Allowed', description: 'The route exists; the method does not.' },
  'not-acceptable': { status: 406, title: 'Not Acceptable', description: 'No representation in the media type asked for.' },
  'request-timeout': {
    status: 408,
    title: 'Request Timeout',
    description: 'The body arrived slower than the service serves to the end (UPLOAD_MIN_BYTES_PER_SECOND).',
  },
  conflict: {
    status: 409,
    title: 'Conflict',
    description: "The resource's state does not allow this now: `detail` says which state and why.",
  },
  'payload-too-large': { status: 413, title: 'Payload Too Large', description: 'Past a size limit or a dataset quota: `detail` names it.' },
  'uri-too-long': { status: 414, title: 'URI Too Long', description: 'The URL is longer than the service reads.' },
  'unsupported-media-type': {
    status: 415,
    title: 'Unsupported Media Type',
    description: 'The body is not in a media type this route takes: `detail` says which to send.',
  },
  'misdirected-request': {
    status: 421,
    title: 'Misdirected Request',
    description: 'A single-user service answers only to localhost and ALLOWED_HOSTS.',
  },
  'unprocessable-content': {
    status: 422,
    title: 'Unprocessable Content',
    description: 'The request is well-formed but cannot be processed.',
  },
  'idempotency-key-reused': {
    status: 422,
    title: 'Idempotency key reused',
    description: 'This Idempotency-Key was used for another job spec in the last 24 hours.',
  },
  'too-many-requests': { status: 429, title: 'Too Many Requests', description: 'Past a rate limit: wait for the Retry-After seconds.' },
  'quota-exceeded': {
    status: 429,
    title: 'Quota exceeded',
    description: "An owner's quota is used up (`quota`, `limit`): it frees as jobs end or data is removed.",
  },
  'fair-share-exceeded': {
    status: 429,
    title: 'Fair share exceeded',
    description: 'The caller holds its share of a capacity all owners draw on: retry after the Retry-After seconds.',
  },
  'internal-error': { status: 500, title: 'Internal Server Error', description: 'The service failed: its log has the request id.' },
  unavailable: {
    status: 503,
    title: 'Service Unavailable',
    description: 'A dependency is away or the service is at capacity: retry after the Retry-After seconds.',
  },
  'insufficient-storage': { status: 507, title: 'Insufficient Storage', description: 'The disk the request needs is full.' },
} as const satisfies Record<string, { status: number; title: string; description: string }>;
export type ProblemSlug = keyof typeof PROBLEM_TYPES;

export const ProblemType = z.object({ type: z.string(), status: z.number().int(), title: z.string(), description: z.string() });
