import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { sseMessages, type SseMessage } from '../../common/sse.js';
import type { Metrics } from '../../schemas/metrics.js';
import { testApp } from '../helpers/app.js';
import { startService, type TestService } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';

/** Reads a Server-Sent Events stream to its end. */
async function readStream(url: string, headers: Record<string, string> = {}): Promise<{ status: number; events: SseMessage[] }> {
  const response = await fetch(url, { headers: { accept: 'text/event-stream', ...headers } });
  if (!response.ok || !response.body) return { status: response.status, events: [] };
  assert.match(String(response.headers.get('content-type')), /^text\/event-stream/);
  const events: SseMessage[] = [];
  for await (const message of sseMessages(response.body)) events.push(message);
  return { status: response.status, events };
}

const byStreamOrder = (a: string, b: string) => {
  const [ams, aseq, apart] = a.split(/[-/]/).map(BigInt);
  const [bms, bseq, bpart] = b.split(/[-/]/).map(BigInt);
  return ams !== bms ? (ams < bms ? -1 : 1) : aseq !== bseq ? (aseq < bseq ? -1 : 1) : apart === bpart ? 0 : apart < bpart ? -1 : 1;
};

describe('live job events (Server-Sent Events)', () => {
  let service: TestService;
  let base: string;
  before(async () => {
    service = await startService('events');
    await service.startWorker();
    await service.app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}`;
  });
  after(() => service.stop());

  it("streams a job's states, progress and every epoch's metrics to its end, and resumes after Last-Event-ID on any API process", async () => {
    const submitted = await service
      .http()
      .post('/v1/jobs')
      .send({
        mode: 'fine_tuning',
        weights: 'random',
        inputSize: 32,
        epochs: 3,
        batchSize: 4,
        augmentation: { randomResizedCrop: false, horizontalFlip: false },
        dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 10, imageSize: 32 },
      });
    assert.equal(submitted.status, 202);
    const url = `${base}/v1/jobs/${submitted.body.id}/events`;
    const { status, events } = await readStream(url);
    assert.equal(status, 200);

    const names = events.map((e) => e.event);
    assert.equal(names[0], 'status', 'the whole status first');
    assert.ok(names.includes('progress'));
    const ids = events.map((e) => e.id ?? 'none');
    assert.deepEqual([...ids].sort(byStreamOrder), ids, 'in stream order');
    assert.equal(new Set(ids).size, ids.length, 'none twice');
    const last = events.at(-1)!;
    assert.equal(last.event, 'state');
    assert.deepEqual((last.data as { state: string; result: { epochsCompleted: number } }).state, 'completed');
    assert.equal((last.data as { result: { epochsCompleted: number } }).result.epochsCompleted, 3);
    const training = events.filter((e) => e.event === 'progress' && (e.data as { phase: string }).phase === 'training');
    assert.ok(training.length >= 3, 'progress through the epochs');
    const percents = events.filter((e) => e.event === 'progress').map((e) => (e.data as { percent: number }).percent);
    assert.deepEqual(
      [...percents].sort((a, b) => a - b),
      percents,
      'progress only moves forward',
    );
    const metrics = (await service.http().get(`/v1/jobs/${submitted.body.id}/metrics`)).body as Metrics;
    assert.deepEqual(
      events.filter((e) => e.event === 'epoch').map((e) => e.data),
      metrics.epochs,
      "each epoch's metrics once, as the job records them",
    );

    // Cut after the second epoch's metrics; resume on another API process of the same service.
    const cut = events.findIndex((e) => e.event === 'epoch' && (e.data as { epoch: number }).epoch === 2);
    const other = await testApp('events', tempDir('events-other'), { QUEUE_PREFIX: service.config.QUEUE_PREFIX });
    try {
      await other.app.listen({ host: '127.0.0.1', port: 0 });
      const otherBase = `http://127.0.0.1:${(other.app.server.address() as AddressInfo).port}`;
      const resumed = await readStream(`${otherBase}/v1/jobs/${submitted.body.id}/events`, { 'last-event-id': events[cut].id ?? '' });
      assert.deepEqual(resumed.events, events.slice(cut + 1), 'exactly the events after it');
      // A finished job's stream from the start: its status, then the end.
      const later = await readStream(`${otherBase}/v1/jobs/${submitted.body.id}/events`);
      assert.deepEqual(
        later.events.map((e) => e.event),
        ['status', 'state'],
      );
    } finally {
      // Not other.close(): that would remove the service's keys, which the two processes share.
      await other.app.close();
      await other.queues.close();
      await other.redis.quit();
      rmSync(path.dirname(other.config.DATA_DIR), { recursive: true, force: true });
    }
    assert.equal((await readStream(`${base}/v1/jobs/3b241101-e2bb-4255-8caf-4136c566a962/events`)).status, 404);
    assert.equal((await readStream(url, { 'last-event-id': 'nonsense' })).status, 400);
  });
});
