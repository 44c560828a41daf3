import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { ApiKeys, sameSecret } from '../../../common/api-keys.js';
import { ADMIN_OWNER, LOCAL_OWNER, type Caller } from '../../../schemas/auth.js';
import type { Config } from '../../../schemas/config.js';
import { HttpProblem } from '../problem.js';

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller;
  }
}

export type AuthMode = 'api-keys' | 'single-user';

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|::1|::ffff:127(\.\d{1,3}){3})$/;

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

/** Sets `request.caller` on every route registered in `scope`, or answers 401. */
export function authenticate(scope: FastifyInstance, options: { mode: AuthMode; redis: Redis; prefix: string; adminKey?: string }): void {
  const keys = new ApiKeys(options.redis, options.prefix);
  scope.addHook('onRequest', async (request, reply) => {
    if (options.mode === 'single-user') {
      request.caller = SINGLE_USER;
      return;
    }
    const presented = bearerOf(request);
    if (presented && options.adminKey && sameSecret(presented, options.adminKey)) {
      request.caller = ADMIN;
      return;
    }
    const owner = presented ? await keys.ownerOf(presented) : null;
    if (!owner) {
      reply.header('www-authenticate', 'Bearer realm="retrain"');
      throw new HttpProblem(
        401,
        'Unauthorized',
        presented ? 'the API key is not valid (revoked, mistyped or never issued)' : 'send an API key as Authorization: Bearer <key>',
      );
    }
    request.caller = { owner, admin: false };
  });
}
