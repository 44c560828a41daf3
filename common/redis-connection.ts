import { Cluster, Redis } from 'ioredis';
import type { RedisTarget } from '../schemas/config.js';
import { UnavailableError } from './errors.js';
import type { Logger } from './logger.js';

/** redis-server's arguments for a local server that keeps the queue across restarts (AOF), as `npm start` runs it. */
export const persistentRedisArgs = (port: number, dir: string): string[] => [
  ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''],
  ...['--appendonly', 'yes', '--appendfsync', 'everysec', '--maxmemory-policy', 'noeviction'],
];

/** A connection to one Redis server or to a Redis Cluster: the same commands on either. */
export type RedisClient = Redis | Cluster;

/**
 * ioredis for BullMQ. Workers block on Redis, so their connection must retry forever
 * (`maxRetriesPerRequest: null`, https://docs.bullmq.io/guide/going-to-production); the API fails
 * fast instead, and answers 503 while Redis is away.
 */
export function redisConnection(target: RedisTarget, role: 'producer' | 'worker', log: Logger): RedisClient {
  const options = { maxRetriesPerRequest: role === 'worker' ? null : 1, enableOfflineQueue: role === 'worker', lazyConnect: false };
  let redis: RedisClient;
  if (target.REDIS_CLUSTER_NODES) {
    // The cluster's own address list replaces REDIS_URL's host; its credentials and TLS still apply.
    const { username, password, protocol } = new URL(target.REDIS_URL);
    const nodes = target.REDIS_CLUSTER_NODES.split(',').map((node) => {
      const [host, port] = node.split(':');
      return { host, port: Number(port) };
    });
    redis = new Cluster(nodes, {
      enableOfflineQueue: options.enableOfflineQueue,
      redisOptions: {
        ...options,
        username: username || undefined,
        password: password ? decodeURIComponent(password) : undefined,
        tls: protocol === 'rediss:' ? {} : undefined,
      },
    });
  } else {
    redis = new Redis(target.REDIS_URL, options);
  }
  const where = target.REDIS_CLUSTER_NODES ?? target.REDIS_URL.replace(/\/\/[^@]*@/, '//');
  // ioredis reconnects by itself; say so once per outage instead of once per attempt.
  let reported = false;
  redis.on('error', (error: Error) => {
    if (!reported) log.error({ redis: where, err: error.message }, 'redis unreachable (reconnecting)');
    reported = true;
  });
  redis.on('ready', () => (reported = false));
  return redis;
}

/** The sum of the values of hashes that count bytes per member (kept by jobs, by archives). */
export async function hashTotal(redis: RedisClient, ...keys: string[]): Promise<number> {
  let total = 0;
  for (const key of keys) for (const bytes of await redis.hvals(key)) total += Number(bytes);
  return total;
}

/** Every key matching a pattern, by SCAN (on each master of a cluster): never KEYS, which blocks the server. */
export async function scanKeys(redis: RedisClient, pattern: string): Promise<string[]> {
  const servers = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const keys: string[] = [];
  for (const server of servers) {
    let cursor = '0';
    do {
      const [next, batch] = await server.scan(cursor, 'MATCH', pattern, 'COUNT', 100);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== '0');
  }
  return keys;
}

/** The errors ioredis raises while the server is unreachable (as opposed to a command's own error). */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.name === 'MaxRetriesPerRequestError') return true;
  if (error.name === 'ClusterAllFailedError') return true;
  return /Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|None of startup nodes|Cluster isn't ready|CLUSTERDOWN/.test(
    error.message,
  );
}

/**
 * Resolves once the connection is ready, or rejects with UnavailableError after `timeoutMs` (or when
 * `signal` aborts). BullMQ waits for a lost connection indefinitely: callers that answer clients ask
 * this first, so an outage is a prompt 503 rather than a hung request.
 */
export function whenReady(redis: RedisClient, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const stop = (error: Error | null) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve();
    };
    const timer = setTimeout(() => stop(new UnavailableError(`Redis is unreachable (connection ${redis.status})`)), timeoutMs);
    const onReady = () => stop(null);
    const onAbort = () => stop(new UnavailableError('stopped waiting for Redis'));
    redis.once('ready', onReady);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
