import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../common/logger.js';
import { QueueName, Queues } from '../../common/queue-facade.js';
import { isRedisUnavailable, redisConnection } from '../../common/redis-connection.js';
import { JobSpec } from '../../schemas/job-spec.js';
import { TrainingPayload } from '../../schemas/queue.js';
import { freePort } from '../helpers/ports.js';
import { dropKeysAndDisconnect } from '../helpers/redis.js';

const silent = createLogger('api', 'silent');

describe('the queue facade', () => {
  const redis = redisConnection({ REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' }, 'producer', silent);
  const prefix = `test-queues-${process.pid}`;
  const queues = new Queues(redis, { prefix, attempts: 2 });
  after(async () => {
    await queues.close();
    await dropKeysAndDisconnect(redis, prefix);
  });

  it('enqueues a payload under our job id, with retries and retention, that parses back as the contract', async () => {
    const spec = JobSpec.parse({ mode: 'pretrained' });
    const job = await queues.enqueue(QueueName.Training, '3b241101-e2bb-4255-8caf-4136c566a962', {
      spec,
      owner: 'alice',
      artifactQuotaBytes: null,
      submittedAt: '2026-11-28T00:00:00.000Z',
    });
    assert.equal(job.id, '3b241101-e2bb-4255-8caf-4136c566a962');
    assert.equal(job.opts.attempts, 2);
    const stored = await queues.get(QueueName.Training).getJob(job.id);
    assert.deepEqual(TrainingPayload.parse(stored?.data), {
      spec,
      owner: 'alice',
      artifactQuotaBytes: null,
      submittedAt: '2026-11-28T00:00:00.000Z',
    });
  });

  it("tells an unreachable server from a command's own error", async () => {
    const down = redisConnection({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` }, 'producer', silent);
    const outage = await down.get('x').catch((error: unknown) => error);
    down.disconnect();
    assert.equal(isRedisUnavailable(outage), true, String(outage));
    const wrongType = await redis
      .set(`${prefix}:s`, 'x')
      .then(() => redis.lpush(`${prefix}:s`, 'y'))
      .catch((error: unknown) => error);
    assert.equal(isRedisUnavailable(wrongType), false, String(wrongType));
  });
});
