import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from 'ioredis';
import { scanKeys } from '../../common/redis-connection.js';
import { loadConfig } from '../../schemas/config.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-server.js';
import { completedJob, startService, untilReady, type TestService, downloadWhenMade } from '../helpers/service.js';

describe('the service on a three-node Redis Cluster (REDIS_CLUSTER_NODES)', () => {
  let cluster: RedisCluster;
  let service: TestService;
  const prefix = `{test-cluster-${process.pid}}`;

  before(async () => {
    cluster = await startRedisCluster(3);
    service = await startService('cluster', { REDIS_CLUSTER_NODES: cluster.nodes, QUEUE_PREFIX: prefix });
    await service.startWorker();
  });
  after(async () => {
    await service?.stop();
    await cluster?.stop();
  });

  it('refuses a prefix that is not a hash tag: BullMQ needs all of a queue in one slot', () => {
    assert.throws(() => loadConfig({ REDIS_CLUSTER_NODES: cluster.nodes, QUEUE_PREFIX: 'retrain' }), /QUEUE_PREFIX: on a Redis Cluster/);
    assert.throws(() => loadConfig({ QUEUE_PREFIX: '{re}train' }), /QUEUE_PREFIX/);
  });

  it('queues, trains and serves a job, lists its worker in /readyz, and keeps its keys in one slot', async () => {
    assert.ok(service.redis instanceof Cluster, 'the API talks to the cluster');
    await untilReady(service);
    const ready = await service.http().get('/readyz');
    assert.equal(ready.body.workers.length, 1, 'the heartbeat is found by scanning every master');

    const { id, metrics } = await completedJob(service, {
      mode: 'feature_extraction',
      weights: 'random',
      inputSize: 32,
      epochs: 2,
      dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 6, imageSize: 32, seed: 9 },
    });
    assert.deepEqual(
      metrics.epochs.map((e) => e.epoch),
      [1, 2],
    );
    const listed = await service.http().get('/v1/jobs');
    assert.deepEqual(
      listed.body.items.map((job: { id: string }) => job.id),
      [id],
    );
    const checkpoint = (await downloadWhenMade(() => service.http().get(`/v1/jobs/${id}/checkpoint`))).response;
    assert.equal(checkpoint.status, 200);

    const keys = await scanKeys(service.redis, `${prefix}:*`);
    assert.ok(
      keys.some((key) => key.startsWith(`${prefix}:training:`)),
      "BullMQ's keys are under the prefix",
    );
    const slots = new Set(await Promise.all(keys.map((key) => service.redis.cluster('KEYSLOT', key))));
    assert.equal(slots.size, 1, 'every key in one slot');
  });
});
