import { scanKeys, type RedisClient } from '../../common/redis-connection.js';

/**
 * A test file's cleanup: removes the keys under `prefix`, then closes the connection. With every test filtered out by a
 * name pattern the connection may still be coming up (nothing was written then): it is closed all the same, or the
 * file would never exit.
 */
export async function dropKeysAndDisconnect(redis: RedisClient, prefix: string): Promise<void> {
  try {
    if (redis.status === 'ready') for (const key of await scanKeys(redis, `${prefix}:*`)) await redis.del(key);
  } finally {
    redis.disconnect();
  }
}
