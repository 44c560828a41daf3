import { redisKeys } from '../../../common/redis-keys.js';
import { type RedisClient } from '../../../common/redis-connection.js';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ApiKeys, sameSecret } from '../../../common/api-keys.js';
import { ADMIN_OWNER, LOCAL_OWNER, type Caller } from '../../../schemas/auth.js';
import type { Config } from '../../../schemas/config.js';
import { HttpProblem, sendProblem } from '../problem.js';

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller;
    /** The public id of the request's key (`admin`; `local` in single-user mode): rate limits count per key. */
    keyId: string;
  }
}

export type AuthMode = 'api-keys' | 'single-user';

const Me = z.object({
  owner: z.string(),
  admin: z.boolean(),
  auth: z.enum(['api-keys', 'single-user']).describe('single-user: loopback without keys; every request acts as the admin "local"'),
});

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|::1|::ffff:127(\.\d{1,3}){3})$/;
/** Host names a browser resolves to this machine itself, whatever DNS says (RFC 6761 keeps *.localhost local). */
const LOOPBACK_HOST = /^(localhost|[\w.-]+\.localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/**
 * API keys when ADMIN_API_KEY is set. Without it, only a loopback listener may start, as the one
 * user's own service: anything reachable from another host must not run without keys.
 */
export function authModeOf(config: Pick<Config, 'ADMIN_API_KEY' | 'HOST'>): AuthMode {
  if (config.ADMIN_API_KEY) return 'api-keys';
  if (LOOPBACK.test(config.HOST)) return 'single-user';
  throw new Error(`refusing to listen on ${config.HOST} without API keys: set ADMIN_API_KEY (or listen on 127.0.0.1)`);
}

const SINGLE_USER: Caller = { owner: LOCAL_OWNER, admin: true };
const ADMIN: Caller = { owner: ADMIN_OWNER, admin: true };

function bearerOf(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? /^Bearer ([\x21-\x7e]{1,512})$/i.exec(header) : null;
  return match ? match[1] : null;
}

/** The host part of a Host header or an Origin's authority: the name or address without the port. */
function hostOf(authority: string): string {
  const bracketed = /^(\[[^\]]*\])(:\d+)?$/.exec(authority);
  return (bracketed ? bracketed[1] : authority.replace(/:\d+$/, '')).toLowerCase();
}

/**
 * Single-user mode trusts whoever reaches it, and only loopback can: so a request must also name this
 * machine in `Host` (a page on another site that rebinds its DNS name to 127.0.0.1 still sends its own
 * name, 421), and a state-changing request from a browser must come from such an origin (403).
 * ALLOWED_HOSTS adds names (a tunnel's, an /etc/hosts alias).
 */
export function guardLocalHosts(app: FastifyInstance, mode: AuthMode, allowedHosts: string | undefined): void {
  if (mode !== 'single-user') return;
  const allowed = new Set(
    (allowedHosts ?? '')
      .split(',')
      .filter(Boolean)
      .map((name) => name.toLowerCase()),
  );
  const local = (host: string) => LOOPBACK_HOST.test(host) || allowed.has(host);
  app.addHook('onRequest', async (request, reply) => {
    const host = request.headers.host;
    if (host !== undefined && !local(hostOf(host))) {
      return sendProblem(
        reply,
        request,
        421,
        `this single-user service answers only to localhost (or ALLOWED_HOSTS), not to "${hostOf(host)}"`,
      );
    }
    const origin = request.headers.origin;
    if (origin === undefined || ['GET', 'HEAD', 'OPTIONS'].includes(request.method)) return;
    const originHost = URL.canParse(origin) ? hostOf(new URL(origin).host) : null;
    if (originHost === null || !local(originHost)) {
      return sendProblem(reply, request, 403, `requests from pages of ${origin} cannot change this single-user service`);
    }
  });
}

/** Whether an Authorization header carries the admin key (anyone is the admin in single-user mode). */
export const adminCheck =
  (mode: AuthMode, adminKey: string | undefined) =>
  (authorization: string | undefined): boolean => {
    if (mode === 'single-user') return true;
    const match = typeof authorization === 'string' ? /^Bearer ([\x21-\x7e]{1,512})$/i.exec(authorization) : null;
    return Boolean(match && adminKey && sameSecret(match[1], adminKey));
  };

/**
 * Requests no key vouches for, counted per client address in Redis (every API process shares the
 * count): refused keys, and the anonymous routes that touch Redis. Past the limit in a window: 429.
 */
export class AddressLimiter {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly max: number,
    private readonly windowMs: number,
  ) {}

  async count(request: FastifyRequest): Promise<void> {
    const key = redisKeys(this.prefix).anonymousRequests(request.ip);
    const results = await this.redis.multi().incr(key).pexpire(key, this.windowMs, 'NX').pttl(key).exec();
    const [count, , leftMs] = (results ?? []).map(([, value]) => Number(value));
    if (count <= this.max) return;
    throw new HttpProblem(
      429,
      'Too Many Requests',
      `more than ${this.max} requests without a valid key from your address in ${this.windowMs / 1000} s; retry after the Retry-After seconds`,
      Math.max(1, Math.ceil(leftMs / 1000)),
    );
  }
}

/**
 * On every route registered in `scope` after it: sets `request.caller` or answers 401, then counts
 * the request against the owner's rate limit (in Redis, so every API process shares the budget).
 */
export async function guardOwners(
  scope: FastifyInstance,
  mode: AuthMode,
  config: Pick<Config, 'QUEUE_PREFIX' | 'ADMIN_API_KEY' | 'RATE_LIMIT_MAX' | 'RATE_LIMIT_WINDOW_MS'>,
  redis: RedisClient,
  anonymous: AddressLimiter,
): Promise<void> {
  scope.decorateRequest('caller', null as unknown as Caller);
  scope.decorateRequest('keyId', '');
  authenticate(scope, mode, redis, config.QUEUE_PREFIX, config.ADMIN_API_KEY, anonymous);
  await scope.register(rateLimit, {
    redis,
    nameSpace: redisKeys(config.QUEUE_PREFIX).rateLimitNamespace,
    max: config.RATE_LIMIT_MAX,
    timeWindow: config.RATE_LIMIT_WINDOW_MS,
    keyGenerator: (request) => request.keyId,
    allowList: (request) => request.caller.admin,
    errorResponseBuilder: (_request, context) =>
      new HttpProblem(
        429,
        'Too Many Requests',
        `more than ${context.max} requests in ${context.after}; retry after the Retry-After seconds`,
      ),
  });
  scope.get('/me', { schema: { response: { 200: Me } } }, async (request) => ({ ...request.caller, auth: mode }));
}

function authenticate(
  scope: FastifyInstance,
  mode: AuthMode,
  redis: RedisClient,
  prefix: string,
  adminKey: string | undefined,
  anonymous: AddressLimiter,
): void {
  const keys = new ApiKeys(redis, prefix);
  scope.addHook('onRequest', async (request, reply) => {
    if (mode === 'single-user') {
      request.caller = SINGLE_USER;
      request.keyId = LOCAL_OWNER;
      return;
    }
    const presented = bearerOf(request);
    if (presented && adminKey && sameSecret(presented, adminKey)) {
      request.caller = ADMIN;
      request.keyId = ADMIN_OWNER;
      return;
    }
    const key = presented ? await keys.verify(presented) : null;
    if (!key) {
      // Refusals cost a key lookup each: counted per address, so guessing keys is throttled too.
      await anonymous.count(request);
      reply.header('www-authenticate', 'Bearer realm="retrain"');
      throw new HttpProblem(
        401,
        'Unauthorized',
        presented ? 'the API key is not valid (revoked, mistyped or never issued)' : 'send an API key as Authorization: Bearer <key>',
      );
    }
    request.caller = { owner: key.owner, admin: false };
    request.keyId = key.id;
  });
}

/** The password of HTTP Basic credentials (any user name): what a browser sends after its login prompt. */
function basicPasswordOf(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? /^Basic ([A-Za-z0-9+/=]{1,1024})$/i.exec(header) : null;
  if (!match) return null;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 ? decoded.slice(colon + 1) : null;
}

/**
 * Routes in `scope` answer only the admin key (anyone in single-user mode, which listens on loopback only).
 * `browser`: pages a person opens (the queue admin) also take the key as a Basic password, so the browser asks for it.
 */
export function guardAdmin(scope: FastifyInstance, mode: AuthMode, adminKey: string | undefined, { browser = false } = {}): void {
  scope.addHook('onRequest', async (request, reply) => {
    if (mode === 'single-user') return;
    const presented = bearerOf(request) ?? (browser ? basicPasswordOf(request) : null);
    if (presented && adminKey && sameSecret(presented, adminKey)) return;
    // Answered here rather than thrown: the queue admin's plugin has an error handler of its own that would make it a 500.
    reply.header('www-authenticate', browser ? 'Basic realm="retrain admin", charset="UTF-8"' : 'Bearer realm="retrain"');
    const detail = browser
      ? 'sign in with the admin key as the password (any user name)'
      : 'send the admin key as Authorization: Bearer <key>';
    return sendProblem(reply, request, 401, detail);
  });
}
