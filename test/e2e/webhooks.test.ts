import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Delivery, WebhookBody } from '../../schemas/webhook.js';
import { finished, pollJob, sleep, startService, type TestService } from '../helpers/service.js';

interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A loopback receiver: /ok answers 204, /flaky 500 twice then 200, /redirect 302 to /ok. */
async function startReceiver() {
  const received: Received[] = [];
  let flakyCalls = 0;
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      received.push({ path: request.url ?? '', headers: request.headers, body });
      if (request.url === '/flaky') response.writeHead(++flakyCalls <= 2 ? 500 : 200).end();
      else if (request.url === '/redirect') response.writeHead(302, { location: '/ok' }).end();
      else response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, received, close: () => new Promise((resolve) => server.close(resolve)) };
}

describe('webhooks to a loopback receiver', () => {
  let service: TestService;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  const secrets = new Map<string, string>();
  const ids = new Map<string, string>();
  let jobId: string;
  before(async () => {
    receiver = await startReceiver();
    service = await startService('webhooks', { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAY_MS: '200', SWEEP_TICK_MS: '300' });
    await service.startWorker();
    for (const [path, events] of [
      ['/ok', ['job.completed', 'sweep.completed']],
      ['/flaky', ['job.completed']],
      ['/redirect', ['job.completed']],
      ['/failures', ['job.failed']],
    ] as const) {
      const created = await service
        .http()
        .post('/v1/webhooks')
        .send({ url: `${receiver.base}${path}`, events });
      assert.equal(created.status, 201, created.text);
      assert.match(created.body.secret, /^whsec_/);
      secrets.set(path, created.body.secret);
      ids.set(path, created.body.id);
    }
    const submitted = await service.http().post('/v1/jobs').send({ mode: 'pretrained', weights: 'random', inputSize: 32 });
    jobId = submitted.body.id;
    assert.equal((await pollJob(service, jobId, finished)).state, 'completed');
  });
  after(async () => {
    await service.stop();
    await receiver.close();
  });

  async function deliveriesOf(path: string, done: (deliveries: Delivery[]) => boolean): Promise<Delivery[]> {
    for (let i = 0; i < 600; i++) {
      const response = await service.http().get(`/v1/webhooks/${ids.get(path)}`);
      assert.equal(response.status, 200, response.text);
      if (done(response.body.deliveries)) return response.body.deliveries as Delivery[];
      await sleep(100);
    }
    assert.fail(`the deliveries to ${path} did not get there`);
  }

  it('signs each notice with HMAC-SHA256 of its timestamp and body', async () => {
    await deliveriesOf('/ok', (d) => d.some((x) => x.outcome === 'delivered'));
    const [notice] = receiver.received.filter((r) => r.path === '/ok');
    const [, at, signed] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(notice.headers['retrain-signature'])) ?? [];
    assert.ok(at, String(notice.headers['retrain-signature']));
    const expected = createHmac('sha256', secrets.get('/ok')!).update(`${at}.${notice.body}`).digest('hex');
    assert.equal(signed, expected, 'the signature verifies with the secret shown once');
    assert.ok(Math.abs(Date.now() / 1000 - Number(at)) < 600, 'a recent timestamp, so a replay can be refused');
    const forged = createHmac('sha256', 'whsec_wrong').update(`${at}.${notice.body}`).digest('hex');
    assert.notEqual(signed, forged);
    const body = JSON.parse(notice.body) as WebhookBody;
    assert.equal(body.type, 'job.completed');
    assert.equal(notice.headers['retrain-event'], 'job.completed');
    assert.equal(notice.headers['retrain-delivery'], body.id);
    assert.deepEqual([body.data.id, body.data.state], [jobId, 'completed']);
    const listed = await service.http().get('/v1/webhooks');
    assert.equal(listed.body.items.length, 4);
    assert.ok(
      listed.body.items.every((w: object) => !('secret' in w)),
      'the secret is shown once',
    );
  });

  it('tries a receiver that answers 500 twice a third time', async () => {
    const deliveries = await deliveriesOf('/flaky', (d) => d.some((x) => x.outcome === 'delivered'));
    assert.deepEqual(
      deliveries.map((d) => [d.attempt, d.outcome, d.responseStatus]),
      [
        [3, 'delivered', 200],
        [2, 'retrying', 500],
        [1, 'retrying', 500],
      ],
    );
    const bodies = receiver.received.filter((r) => r.path === '/flaky').map((r) => JSON.parse(r.body) as WebhookBody);
    assert.equal(new Set(bodies.map((b) => b.id)).size, 1, 'one delivery id on every try');
  });

  it('does not follow a redirect', async () => {
    const deliveries = await deliveriesOf('/redirect', (d) => d.some((x) => x.outcome === 'failed'));
    assert.deepEqual(
      deliveries.map((d) => [d.attempt, d.outcome, d.responseStatus]),
      [[1, 'failed', 302]],
    );
    assert.match(deliveries[0].error ?? '', /redirects are not followed/);
    assert.equal(receiver.received.filter((r) => r.path === '/ok').length, 1, 'nothing reached the redirect target');
  });

  it('tells when a sweep completes, and only the events a webhook asked for', async () => {
    const sweep = await service
      .http()
      .post('/v1/sweeps')
      .send({
        base: {
          mode: 'feature_extraction',
          weights: 'random',
          inputSize: 32,
          epochs: 1,
          dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 6, imageSize: 32 },
        },
        parameters: { labelSmoothing: { values: [0] } },
        search: { method: 'grid' },
      });
    assert.equal(sweep.status, 202, sweep.text);
    await deliveriesOf('/ok', (d) => d.some((x) => x.event === 'sweep.completed' && x.outcome === 'delivered'));
    const notice = receiver.received.map((r) => JSON.parse(r.body) as WebhookBody).find((b) => b.type === 'sweep.completed');
    assert.deepEqual([notice?.data.id, notice?.data.state], [sweep.body.id, 'completed']);
    assert.deepEqual((await service.http().get(`/v1/webhooks/${ids.get('/failures')}`)).body.deliveries, [], 'no job failed');
  });

  it('forgets a deleted webhook', async () => {
    assert.equal((await service.http().delete(`/v1/webhooks/${ids.get('/failures')}`)).status, 204);
    assert.equal((await service.http().get(`/v1/webhooks/${ids.get('/failures')}`)).status, 404);
  });
});
