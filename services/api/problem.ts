import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  ConflictError,
  DomainError,
  FairShareError,
  IdempotencyKeyReusedError,
  InvalidInputError,
  NotFoundError,
  QuotaExceededError,
  SlowSenderError,
  StorageFullError,
  TooLargeError,
  UnavailableError,
} from '../../common/errors.js';
import { isRedisUnavailable } from '../../common/redis-connection.js';
import { PROBLEM_TYPES, type Problem, type ProblemSlug } from '../../schemas/problem.js';
import { ThreadBusyError } from './thread-rpc.js';

/** An HTTP-level refusal the domain knows nothing of (a wrong media type, say). */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(detail);
  }
}

/** Seconds a client should wait before retrying a 503. */
export const RETRY_AFTER_SECONDS = 10;

/** A problem's `type`: the entry of PROBLEM_TYPES for its title (a domain title), else for its status. */
function typeOf(status: number, title: string | undefined): { type: string; title: string } {
  const entries = Object.entries(PROBLEM_TYPES) as Array<[ProblemSlug, (typeof PROBLEM_TYPES)[ProblemSlug]]>;
  const found = entries.find(([, t]) => t.title === title) ?? entries.find(([, t]) => t.status === status);
  return found ? { type: `/problems/${found[0]}`, title: title ?? found[1].title } : { type: 'about:blank', title: title ?? 'Error' };
}

export function sendProblem(
  reply: FastifyReply,
  request: FastifyRequest,
  status: number,
  detail: string,
  extra: Partial<Problem> = {},
): FastifyReply {
  if (status === 503) reply.header('retry-after', RETRY_AFTER_SECONDS);
  const body: Problem = {
    ...typeOf(status, extra.title),
    status,
    detail,
    instance: request.url,
    requestId: request.id,
    ...extra,
  };
  return reply.code(status).type('application/problem+json').send(body);
}

/** The one mapping from what went wrong to a status: typed domain errors, framework 4xx, Redis outages; 5xx without internals. */
function problemOf(error: unknown): { status: number; detail: string; extra?: Partial<Problem>; retryAfter?: number } | null {
  if (error instanceof InvalidInputError) {
    return { status: 400, detail: error.message, extra: { title: 'Invalid request', in: error.location, errors: error.errors } };
  }
  if (error instanceof NotFoundError) return { status: 404, detail: error.message };
  if (error instanceof ConflictError) return { status: 409, detail: error.message, extra: error.details };
  if (error instanceof IdempotencyKeyReusedError) return { status: 422, detail: error.message, extra: { title: 'Idempotency key reused' } };
  if (error instanceof TooLargeError) return { status: 413, detail: error.message };
  if (error instanceof FairShareError)
    return { status: 429, detail: error.message, extra: { title: 'Fair share exceeded' }, retryAfter: error.retryAfterSeconds };
  if (error instanceof StorageFullError) return { status: 507, detail: error.message };
  if (error instanceof SlowSenderError) return { status: 408, detail: error.message };
  if (error instanceof QuotaExceededError)
    return { status: 429, detail: error.message, extra: { title: 'Quota exceeded', ...error.details } };
  if (error instanceof UnavailableError || error instanceof ThreadBusyError) return { status: 503, detail: error.message };
  if (isRedisUnavailable(error)) {
    return { status: 503, detail: 'a service this request needs (Redis) is unreachable; retry later' };
  }
  if (error instanceof DomainError) return null;
  if (error instanceof HttpProblem)
    return { status: error.status, detail: error.detail, extra: { title: error.title }, retryAfter: error.retryAfterSeconds };
  const status = (error as FastifyError).statusCode;
  if (status === 503) return { status, detail: (error as Error).message };
  // A JSON route sent something else (a form, text): say what it takes.
  if ((error as FastifyError).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return {
      status: 415,
      detail: `${(error as Error).message}: send the body as application/json`,
      extra: { code: (error as FastifyError).code },
    };
  if (status && status >= 400 && status < 500)
    return { status, detail: (error as Error).message, extra: { code: (error as FastifyError).code } };
  return null;
}

/** Errors Fastify raises before routing (a malformed URL, an over-long path parameter), as problems too. */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  void sendProblem(reply, request, error.statusCode && error.statusCode < 500 ? error.statusCode : 400, error.message, {
    code: error.code,
  });
}

export function registerProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: unknown, request, reply) => {
    const problem = problemOf(error);
    if (problem?.retryAfter) reply.header('retry-after', problem.retryAfter);
    if (problem) return sendProblem(reply, request, problem.status, problem.detail, problem.extra);
    request.log.error({ err: error }, 'unhandled error');
    return sendProblem(reply, request, 500, 'The server failed to handle this request; see the server log for the request id.');
  });
  app.setNotFoundHandler((request, reply) => sendProblem(reply, request, 404, `no route for ${request.method} ${request.url}`));
}

/** Past this, a refused upload's connection is closed rather than read to its end. */
const DRAIN_LIMIT_BYTES = 64 * 1024 * 1024;

/**
 * Before answering an upload early (4xx), read the rest of its body: a client cut off mid-write sees
 * a broken pipe instead of the answer. Not a large body's, nor one that arrives too slowly to wait for.
 */
export async function drainBody(request: FastifyRequest, reply: FastifyReply, error: unknown): Promise<void> {
  if (request.raw.readableEnded) return;
  if (Number(request.headers['content-length'] ?? 0) > DRAIN_LIMIT_BYTES || error instanceof SlowSenderError) {
    reply.header('connection', 'close');
    return;
  }
  await new Promise((resolve) => {
    request.raw.once('end', resolve).once('close', resolve).once('error', resolve);
    request.raw.resume();
  });
}
