import { rmSync } from 'node:fs';
import path from 'node:path';
import { openArtifactStore } from '../../common/open-artifact-store.js';
import { createLogger } from '../../common/logger.js';
import { queueOptionsOf, Queues } from '../../common/queue-facade.js';
import { isRedisUnavailable, scanKeys, redisConnection, whenReady } from '../../common/redis-connection.js';
import { loadConfig } from '../../schemas/config.js';
import { buildApp } from '../../services/api/app.js';
import { tempDir } from './torch.js';

/** The real API in this process, on a real Redis, with its own queue prefix and folders under `scratch`. */
export async function testApp(name: string, scratch: string, env: Record<string, string> = {}) {
  const config = loadConfig({
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    QUEUE_PREFIX: `test-${name}-${process.pid}`,
    DATA_DIR: path.join(scratch, 'data'),
    ARTIFACTS_DIR: path.join(scratch, 'artifacts'),
    LOG_LEVEL: 'silent',
    ...env,
  });
  const logger = createLogger('api', config.LOG_LEVEL);
  const redis = redisConnection(config, 'producer', logger);
  const queues = new Queues(redis, queueOptionsOf(config));
  const store = await openArtifactStore(config);
  const app = await buildApp({ config, redis, queues, store, logger }).catch(async (error: unknown) => {
    await queues.close();
    redis.disconnect();
    throw error;
  });
  await app.ready();

  /** Closes the app and removes the test's Redis keys (when Redis is there to ask). */
  async function close(): Promise<void> {
    await app.close();
    try {
      // A pipeline of single-key DELs: on a cluster (hash-tagged prefix) they all go to the one node of its slot.
      const cleanup = redis.pipeline();
      for (const key of await scanKeys(redis, `${config.QUEUE_PREFIX}:*`)) cleanup.del(key);
      await cleanup.exec();
      await queues.close();
      await redis.quit();
    } catch (error) {
      // A test that took Redis away leaves nothing to clean.
      if (!isRedisUnavailable(error)) throw error;
      redis.disconnect();
    }
  }

  return { config, app, redis, queues, store, close };
}

/** The API alone with API keys on, in a scratch folder of its own that `close` also removes. */
export async function keyedTestApp(name: string, adminKey: string) {
  const scratch = tempDir(name);
  const api = await testApp(name, scratch, { ADMIN_API_KEY: adminKey });
  await whenReady(api.redis, 5000);
  return {
    ...api,
    close: async () => {
      await api.close();
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}
