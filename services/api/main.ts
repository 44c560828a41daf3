// The API process: validates and enqueues jobs, serves status and artifacts. Stateless: run many.
import { openArtifactStore } from '../../common/open-artifact-store.js';
import { createLogger } from '../../common/logger.js';
import { queueOptionsOf, Queues } from '../../common/queue-facade.js';
import { redisConnection } from '../../common/redis-connection.js';
import { loadConfig } from '../../schemas/config.js';
import { buildApp } from './app.js';

const config = loadConfig();
const logger = createLogger('api', config.LOG_LEVEL);
const redis = redisConnection(config, 'producer', logger);
const queues = new Queues(redis, queueOptionsOf(config));
const app = await buildApp({ config, redis, queues, store: await openArtifactStore(config), logger });

await app.listen({ host: config.HOST, port: config.PORT });

let closing = false;
async function shutdown(signal: string) {
  if (closing) return;
  closing = true;
  logger.info({ signal }, 'shutting down: server');
  await app.close();
  logger.info('shutting down: queues');
  await queues.close();
  logger.info('shutting down: redis');
  await redis.quit();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
