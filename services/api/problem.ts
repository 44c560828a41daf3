import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';

export interface FieldError {
  /** Dotted path of the field, e.g. `dataset.path` or `fineTuning`. */
  path: string;
  message: string;
}

/** An error the client can act on, rendered as application/problem+json (RFC 9457). */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(detail);
  }
}

export function zodFieldErrors(error: z.ZodError): FieldError[] {
  return error.issues.flatMap((issue) => {
    const at = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: at ? `${at}.${key}` : key, message: `"${key}" is not a field here` }));
    }
    if (issue.code === 'invalid_union' && 'discriminator' in issue) {
      return [{ path: at || String(issue.discriminator), message: issue.message }];
    }
    return [{ path: at || '(root)', message: issue.message }];
  });
}

/** Parses `value` or answers 400 naming every failing field. */
export function parseOrThrow<T extends z.ZodType>(schema: T, value: unknown, location: 'body' | 'query' | 'params'): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const errors = zodFieldErrors(result.error);
  throw new HttpProblem(400, 'Invalid request', `${location} failed validation: ${errors.map((e) => e.path).join(', ')}`, {
    in: location,
    errors,
  });
}

function send(reply: FastifyReply, request: FastifyRequest, status: number, title: string, detail: string, extra = {}) {
  return reply
    .code(status)
    .type('application/problem+json')
    .send({ type: 'about:blank', title, status, detail, instance: request.url, requestId: request.id, ...extra });
}

/** One error handler for the app: typed problems as they are, framework 4xx mapped, 5xx without internals. */
export function registerProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | HttpProblem, request, reply) => {
    if (error instanceof HttpProblem) return send(reply, request, error.status, error.title, error.detail, error.extra);
    const status = (error as FastifyError).statusCode;
    if (status && status >= 400 && status < 500) {
      return send(reply, request, status, titleFor(status), error.message, { code: (error as FastifyError).code });
    }
    request.log.error({ err: error }, 'unhandled error');
    return send(reply, request, 500, 'Internal Server Error', 'The server failed to handle this request; see the server log for the request id.');
  });
  app.setNotFoundHandler((request, reply) => send(reply, request, 404, 'Not Found', `no route for ${request.method} ${request.url}`));
}

function titleFor(status: number): string {
  const titles: Record<number, string> = {
    400: 'Bad Request', 404: 'Not Found', 405: 'Method Not Allowed', 406: 'Not Acceptable', 409: 'Conflict',
    413: 'Payload Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable Content', 429: 'Too Many Requests',
  };
  return titles[status] ?? 'Client Error';
}

const DRAIN_LIMIT_BYTES = 64 * 1024 * 1024;

/**
 * Before answering an upload early (4xx), read the rest of its body: a client cut off mid-write sees
 * a broken pipe instead of the answer. Past 64 MiB the connection is closed instead.
 */
export async function drainBody(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (request.raw.readableEnded) return;
  if (Number(request.headers['content-length'] ?? 0) > DRAIN_LIMIT_BYTES) {
    reply.header('connection', 'close');
    return;
  }
  await new Promise((resolve) => {
    request.raw.once('end', resolve).once('close', resolve).once('error', resolve);
    request.raw.resume();
  });
}
