// The API process: validates and enqueues jobs, serves status and artifacts. Stateless: run many.
import { loadConfig } from '../../schemas/config.js';
import { LocalArtifactStore } from '../artifacts/artifact-store.js';
import { Queues, redisConnection } from '../queue/queues.js';
import { buildApp } from './app.js';

const config = loadConfig();
const redis = redisConnection(config.REDIS_URL, 'producer');
const queues = new Queues(redis, { prefix: config.QUEUE_PREFIX, attempts: config.JOB_ATTEMPTS });
const app = buildApp({ config, redis, queues, store: new LocalArtifactStore(config.ARTIFACTS_DIR) });

await app.listen({ host: config.HOST, port: config.PORT });

let closing = false;
async function shutdown(signal: string) {
  if (closing) return;
  closing = true;
  app.log.info({ signal }, 'shutting down: server');
  await app.close();
  app.log.info('shutting down: queues');
  await queues.close();
  app.log.info('shutting down: redis');
  await redis.quit();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
