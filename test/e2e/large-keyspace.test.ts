import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { redisKeys } from '../../common/redis-keys.js';
import { WorkerRegistry } from '../../common/worker-registry.js';
import { BackendReport } from '../../schemas/model.js';
import { testApp } from '../helpers/app.js';
import { freePort } from '../helpers/ports.js';
import { startRedis, stopRedis } from '../helpers/redis-server.js';
import { sleep } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';

/** Calls of a command since the last CONFIG RESETSTAT, from INFO commandstats. */
async function calls(redis: { info(section: string): Promise<string> }, command: string): Promise<number> {
  const line = (await redis.info('commandstats')).split('\n').find((l) => l.startsWith(`cmdstat_${command}:`));
  return Number(/calls=(\d+)/.exec(line ?? '')?.[1] ?? 0);
}

describe('readiness and metrics on a Redis that holds much else', () => {
  const dir = tempDir('large-keyspace');
  let redis: ChildProcess;
  let api: Awaited<ReturnType<typeof testApp>>;
  before(async () => {
    const port = await freePort();
    redis = await startRedis(port, dir, ['--enable-debug-command', 'yes', '--appendonly', 'no']);
    api = await testApp('large-keyspace', dir, { REDIS_URL: `redis://127.0.0.1:${port}` });
    // The one scan an API makes, at its first start on an older release's data: let it finish on the empty keyspace.
    const total = redisKeys(api.config.QUEUE_PREFIX).artifactBytesTotal;
    for (let i = 0; i < 100 && !(await api.redis.exists(total)); i++) await sleep(50);
  });
  after(async () => {
    await api.close();
    await stopRedis(redis);
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers /readyz and /metrics from their own keys with 800,000 unrelated keys in Redis: no SCAN', async () => {
    await api.redis.call('DEBUG', 'POPULATE', '800000', 'pad');
    assert.equal(await api.redis.dbsize(), 800_000 + (await api.redis.keys(`${api.config.QUEUE_PREFIX}:*`)).length);
    const backend = BackendReport.parse({
      choice: 'wasm',
      backend: 'wasm',
      package: '@tensorflow/tfjs-backend-wasm',
      version: '4.22.0',
      kernels: 'onednn 2.6.3',
      precision: 'fp32',
    });
    await new WorkerRegistry(api.redis, api.config.QUEUE_PREFIX).beat(
      { workerId: 'w1', host: 'gpu-7', pid: 42, backend, queues: ['training'], at: new Date().toISOString() },
      60_000,
    );
    await api.redis.call('CONFIG', 'RESETSTAT');
    const ready = await api.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 200, ready.body);
    assert.equal(ready.json<{ workerCount: number }>().workerCount, 1);
    const metrics = await api.app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(metrics.statusCode, 200);
    assert.match(metrics.body, /retrain_workers\{backend="wasm",kernels="onednn 2.6.3"\} 1/);
    assert.match(metrics.body, /retrain_artifact_bytes\{kind="models"\} 0/);
    assert.equal(await calls(api.redis, 'scan'), 0, 'not one SCAN of the keyspace');
    assert.equal(await calls(api.redis, 'keys'), 0);
  });
});
