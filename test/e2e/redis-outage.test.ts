import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { sseMessages, type SseMessage } from '../../common/sse.js';
import type { Metrics } from '../../schemas/metrics.js';
import { finished, pollJob, sleep, startService, untilReady, type TestService } from '../helpers/service.js';
import { freePort } from '../helpers/ports.js';
import { startRedis, stopRedis } from '../helpers/redis-server.js';
import { tempDir } from '../helpers/torch.js';

/** Longer than the 60 s: the lock, renewed every half of its 150 s, must outlive it. */
const OUTAGE_MS = 61_000;

describe('a Redis crash in the middle of a job', () => {
  const dir = tempDir('redis-outage');
  let port: number;
  let redis: ChildProcess;
  let service: TestService;
  before(async () => {
    port = await freePort();
    redis = await startRedis(port, dir);
    service = await startService('redis-outage', {
      REDIS_URL: `redis://127.0.0.1:${port}`,
      LOCK_DURATION_MS: '150000',
      STALLED_INTERVAL_MS: '30000',
    });
    await service.startWorker();
  });
  after(async () => {
    await service.stop();
    await stopRedis(redis);
    rmSync(dir, { recursive: true, force: true });
  });

  it(`rides out a ${OUTAGE_MS / 1000} s outage: 503 with Retry-After meanwhile, then the job ends in its first attempt, each epoch once`, async () => {
    const submitted = await service
      .http()
      .post('/v1/jobs')
      .send({
        mode: 'fine_tuning',
        weights: 'random',
        inputSize: 32,
        epochs: 3,
        batchSize: 4,
        dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 16, imageSize: 32, seed: 4 },
        fineTuning: { trainableFrom: 'layer3', freezeBatchNorm: true },
      });
    assert.equal(submitted.status, 202, submitted.text);
    const id = submitted.body.id as string;
    await pollJob(service, id, (s) => s.progress.phase === 'training', 120_000);
    await service.app.listen({ host: '127.0.0.1', port: 0 });
    const events = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}/v1/jobs/${id}/events`;
    const before: SseMessage[] = [];
    let streamEnded = false;
    const following = (async () => {
      const response = await fetch(events);
      for await (const message of sseMessages(response.body!)) before.push(message);
      streamEnded = true;
    })();
    while (before.length === 0) await sleep(50);

    await stopRedis(redis);
    const during = await service.http().get(`/v1/jobs/${id}`);
    assert.equal(during.status, 503, during.text);
    assert.equal(during.headers['retry-after'], '10');
    await sleep(OUTAGE_MS);
    assert.equal(streamEnded, true, 'the event stream was ended when its state could not be read, not left frozen');
    await following;
    redis = await startRedis(port, dir);
    await untilReady(service);
    const resumed: SseMessage[] = [];
    const response = await fetch(events, { headers: { 'last-event-id': before.at(-1)?.id ?? '' } });
    for await (const message of sseMessages(response.body!)) resumed.push(message);
    assert.equal((resumed.at(-1)?.data as { state: string }).state, 'completed', 'reconnected with Last-Event-ID, it goes on to the end');

    const status = await pollJob(service, id, finished, 300_000);
    assert.equal(status.state, 'completed', JSON.stringify(status.failure));
    const metrics = (await service.http().get(`/v1/jobs/${id}/metrics`)).body as Metrics;
    assert.deepEqual(
      metrics.epochs.map((epoch) => epoch.epoch),
      [1, 2, 3],
    );
    assert.equal(status.result?.resumedFromEpoch, null, 'never handed to a second run');
  });
});
