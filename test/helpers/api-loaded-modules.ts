// Runs in a fresh process: builds the API, serves a few requests (the summary and preflight ones run
// on the API's worker threads), and prints which CommonJS modules its main thread loaded.
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LocalArtifactStore } from '../../common/artifact-store.js';
import { createLogger } from '../../common/logger.js';
import { Queues, redisConnection } from '../../common/queues.js';
import { loadConfig } from '../../schemas/config.js';
import { buildApp } from '../../services/api/app.js';

const scratch = mkdtempSync(path.join(os.tmpdir(), 'retrain-modules-'));
for (const name of ['cats', 'dogs']) mkdirSync(path.join(scratch, 'data', 'pets', name), { recursive: true });
const config = loadConfig({
  REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  QUEUE_PREFIX: `test-modules-${process.pid}`,
  DATA_DIR: path.join(scratch, 'data'),
  ARTIFACTS_DIR: path.join(scratch, 'artifacts'),
  LOG_LEVEL: 'silent',
});
const logger = createLogger('api', config.LOG_LEVEL);
const redis = redisConnection(config.REDIS_URL, 'producer', logger);
const queues = new Queues(redis, { prefix: config.QUEUE_PREFIX, attempts: 1 });
const app = await buildApp({ config, redis, queues, store: new LocalArtifactStore(config.ARTIFACTS_DIR), logger });
const statuses: Record<string, number> = {};
const spec = {
  mode: 'feature_extraction',
  weights: 'random',
  inputSize: 32,
  epochs: 1,
  dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 2, imageSize: 32 },
};
for (const [name, request] of [
  ['summary', { method: 'POST', url: '/v1/summary', payload: spec, headers: { accept: 'text/plain' } }],
  ['preflight', { method: 'POST', url: '/v1/datasets/preflight', payload: { dataset: spec.dataset } }],
  ['folder job', { method: 'POST', url: '/v1/jobs', payload: { ...spec, dataset: { type: 'folder', path: 'pets' } } }],
  ['synthetic job', { method: 'POST', url: '/v1/jobs', payload: spec }],
  ['list', { method: 'GET', url: '/v1/jobs' }],
] as const) {
  statuses[name] = (await app.inject(request)).statusCode;
}
await app.close();
await redis.del(...(await redis.keys(`${config.QUEUE_PREFIX}:*`)));
await queues.close();
await redis.quit();
const loaded = Object.keys(createRequire(import.meta.url).cache);
process.stdout.write(JSON.stringify({ statuses, loaded }));
