import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { LocalArtifactStore } from '../../../common/artifact-store.js';
import { TooLargeError } from '../../../common/errors.js';
import { createLogger } from '../../../common/logger.js';
import { redisConnection, whenReady } from '../../../common/redis-connection.js';
import { PreflightOptions, SyntheticDataset, type PreflightReport } from '../../../schemas/dataset.js';
import { DatasetQuota } from '../../../services/datasets/dataset-quota.js';
import { Preflights, SYNTHETIC_PREFLIGHTS, syntheticBytes } from '../../../services/datasets/preflights.js';
import type { PreflightRequest } from '../../../services/api/thread-protocol.js';
import { ThreadBusyError, ThreadRpc } from '../../../services/api/thread-rpc.js';
import { tempDir } from '../../helpers/torch.js';
import { dropKeysAndDisconnect } from '../../helpers/redis.js';

const prefix = `test-preflights-${process.pid}`;
const redis = redisConnection({ REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' }, 'producer', createLogger('api', 'silent'));
const dataDir = tempDir('preflights');
before(() => whenReady(redis, 5000));
after(async () => {
  await dropKeysAndDisconnect(redis, prefix);
  rmSync(dataDir, { recursive: true, force: true });
});

const ada = { owner: 'ada', admin: false };
const options = PreflightOptions.parse({});

function preflightsWith(quotaBytes: number, timeoutMs: number) {
  const thread = new ThreadRpc<PreflightRequest, PreflightReport>(
    new URL('../../../services/api/threads/preflight.thread.ts', import.meta.url),
    {
      dataDir,
      artifacts: { ARTIFACTS_DIR: path.join(dataDir, 'artifacts'), S3_REGION: 'us-east-1' },
      backend: 'wasm',
      nativeKernels: false,
    },
    { maxPending: 4, timeoutMs, ownerShare: 1 },
  );
  const quota = new DatasetQuota(redis, prefix, quotaBytes, async () => []);
  const preflights = new Preflights(dataDir, new LocalArtifactStore(path.join(dataDir, 'artifacts')), quota, (request, caller) =>
    thread.call(request, caller),
  );
  return { preflights, quota, close: () => thread.close() };
}

describe('synthetic preflights', () => {
  it('generate a set for the request alone, counted against the quota while it exists, and keep nothing after', async () => {
    const dataset = SyntheticDataset.parse({ type: 'synthetic', numClasses: 2, imagesPerClass: 6, imageSize: 32 });
    const { preflights, quota, close } = preflightsWith(syntheticBytes(dataset), 120_000);
    try {
      const report = await preflights.check(ada, dataset, options);
      assert.equal(report.usable, 12);
      assert.deepEqual(readdirSync(path.join(dataDir, SYNTHETIC_PREFLIGHTS)), [], 'nothing is kept after the answer');
      assert.equal(existsSync(path.join(dataDir, '.synthetic')), false, 'nor in the cache the workers keep');
      assert.equal(await quota.held('ada'), 0, 'and nothing stays reserved');
      const larger = SyntheticDataset.parse({ ...dataset, imagesPerClass: 7 });
      await assert.rejects(
        preflights.check(ada, larger, options),
        (error: Error) =>
          error instanceof TooLargeError && /this synthetic data set needs \d+ bytes.*QUOTA_DATASET_BYTES/.test(error.message),
      );
    } finally {
      await close();
    }
  });

  it('leave no staging folder behind when the thread is stopped mid-write', async () => {
    const dataset = SyntheticDataset.parse({ type: 'synthetic', numClasses: 16, imagesPerClass: 2000, imageSize: 512 });
    const { preflights, quota, close } = preflightsWith(1024 ** 4, 1500);
    try {
      await assert.rejects(preflights.check(ada, dataset, options), ThreadBusyError);
      assert.deepEqual(readdirSync(path.join(dataDir, SYNTHETIC_PREFLIGHTS)), [], 'the half-written set was removed at once');
      assert.equal(await quota.held('ada'), 0);
    } finally {
      await close();
    }
  });
});
