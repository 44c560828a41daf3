import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import * as tar from 'tar';
import { ApiKeys } from '../../common/api-keys.js';
import { redisKeys } from '../../common/redis-keys.js';
import { Problem } from '../../schemas/problem.js';
import { testApp } from '../helpers/app.js';
import { writeMessyDataset } from '../helpers/images.js';
import { sleep, startService, type TestService } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';

const ADMIN_API_KEY = 'admin-key-for-the-shared-capacity-test-0123';

/** A GET whose response is held open (an event stream): resolves with its status once the head arrives. */
function openStream(
  base: string,
  path: string,
  key: string,
): Promise<{ status: number; close: () => void; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const request = http.get(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } }, (response) => {
      response.resume();
      resolve({ status: response.statusCode ?? 0, headers: response.headers, close: () => request.destroy() });
    });
    request.on('error', reject);
  });
}

/** An upload that declares a large body and sends a trickle of it: it holds an upload slot while it lasts. */
function trickleUpload(port: number, key: string): { socket: net.Socket; answer: Promise<string> } {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(
    `POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/gzip\r\nContent-Length: 10000000\r\n\r\n`,
  );
  socket.write(Buffer.alloc(1024));
  const timer = setInterval(() => socket.write(Buffer.alloc(16)), 200);
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  const answer = new Promise<string>((resolve) => socket.on('close', () => resolve(received)).on('error', () => undefined));
  void answer.finally(() => clearInterval(timer));
  return { socket, answer };
}

describe('per-process capacity, shared fairly between owners', () => {
  let service: TestService;
  let base: string;
  let port: number;
  let ada: string;
  let bob: string;
  let scratch: string;
  let archive: Buffer;

  before(async () => {
    service = await startService('shared-capacity', {
      ADMIN_API_KEY,
      EVENT_STREAMS_MAX: '8',
      UPLOAD_MAX_CONCURRENT: '4',
      OWNER_SHARE_PERCENT: '25',
      UPLOAD_MIN_BYTES_PER_SECOND: String(64 * 1024),
      UPLOAD_RATE_WINDOW_MS: '2000',
      RATE_LIMIT_ANONYMOUS_MAX: '5',
    });
    const keys = new ApiKeys(service.redis, service.config.QUEUE_PREFIX);
    ada = (await keys.create('ada')).key;
    bob = (await keys.create('bob')).key;
    await service.app.listen({ host: '127.0.0.1', port: 0 });
    port = (service.app.server.address() as AddressInfo).port;
    base = `http://127.0.0.1:${port}`;
    scratch = tempDir('shared-capacity');
    mkdirSync(path.join(scratch, 'pets'), { recursive: true });
    await writeMessyDataset(path.join(scratch, 'pets'));
    await tar.c({ gzip: true, file: path.join(scratch, 'pets.tar.gz'), cwd: scratch }, ['pets']);
    archive = readFileSync(path.join(scratch, 'pets.tar.gz'));
  });
  after(async () => {
    await service.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  const queuedJob = async (key: string) => {
    const submitted = await service.as(key).post('/v1/jobs').send({ mode: 'pretrained', weights: 'random', inputSize: 32 });
    assert.equal(submitted.status, 202, submitted.text);
    return submitted.body.id as string;
  };

  it("gives one owner at most its share of event streams (429 with Retry-After past it) while another owner's stream opens", async () => {
    const adaJob = await queuedJob(ada);
    const held = [await openStream(base, `/v1/jobs/${adaJob}/events`, ada), await openStream(base, `/v1/jobs/${adaJob}/events`, ada)];
    try {
      assert.deepEqual(
        held.map((s) => s.status),
        [200, 200],
      );
      const third = await service.as(ada).get(`/v1/jobs/${adaJob}/events`);
      assert.equal(third.status, 429, third.text);
      assert.ok(Number(third.headers['retry-after']) > 0);
      assert.match(Problem.parse(third.body).detail ?? '', /you hold 2 of this API process's 8 event streams/);
      const bobs = await openStream(base, `/v1/jobs/${await queuedJob(bob)}/events`, bob);
      assert.equal(bobs.status, 200, "bob's stream opens while ada holds her share");
      bobs.close();
    } finally {
      held.forEach((stream) => stream.close());
    }
  });

  it('leaves Connection to Node on an event stream: a client that asked to close gets close, and its next request is answered', async () => {
    const job = await queuedJob(ada);
    assert.equal((await service.as(ada).delete(`/v1/jobs/${job}`)).status, 202);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = (url: string) =>
      new Promise<{ status: number; connection: string | undefined }>((resolve, reject) =>
        http
          .get(`${base}${url}`, { agent, headers: { connection: 'close', authorization: `Bearer ${ada}` } }, (response) => {
            response.resume();
            response.on('end', () => resolve({ status: response.statusCode ?? 0, connection: response.headers.connection }));
          })
          .on('error', reject),
      );
    try {
      const stream = await get(`/v1/jobs/${job}/events`);
      assert.deepEqual(stream, { status: 200, connection: 'close' });
      assert.equal((await get(`/v1/jobs/${job}`)).status, 200, 'no stray 400 on a reused socket');
    } finally {
      agent.destroy();
    }
  });

  it("gives one owner one upload slot of four: a trickle holds only hers, bob's upload is taken, and the trickle is cut off below the floor", async () => {
    const trickle = trickleUpload(port, ada);
    await sleep(300);
    const second = await service.as(ada).post('/v1/datasets').set('content-type', 'application/gzip').send(archive);
    assert.equal(second.status, 429, second.text);
    assert.ok(Number(second.headers['retry-after']) > 0);
    const bobs = await service.as(bob).post('/v1/datasets').set('content-type', 'application/gzip').send(archive);
    assert.equal(bobs.status, 201, bobs.text);
    const answer = await trickle.answer;
    assert.match(answer, /^HTTP\/1\.1 408/, answer.slice(0, 200));
    assert.match(answer, /UPLOAD_MIN_BYTES_PER_SECOND/);
    const again = await service.as(ada).post('/v1/datasets').set('content-type', 'application/gzip').send(archive);
    assert.equal(again.status, 201, 'her slot is free again once the trickle was cut off');
  });

  it("gives one owner its share of a thread's queue: ada's second preflight waits for nothing and gets 429, bob's is answered", async () => {
    const large = { dataset: { type: 'synthetic', numClasses: 8, imagesPerClass: 300, imageSize: 64, seed: 1 } };
    const first = service
      .as(ada)
      .post('/v1/datasets/preflight')
      .send(large)
      .then((r) => r);
    await sleep(300);
    const second = await service
      .as(ada)
      .post('/v1/datasets/preflight')
      .send({ dataset: { type: 'synthetic', numClasses: 2, seed: 2 } });
    assert.equal(second.status, 429, second.text);
    const bobs = await service
      .as(bob)
      .post('/v1/datasets/preflight')
      .send({ dataset: { type: 'synthetic', numClasses: 2, seed: 3 } });
    assert.equal(bobs.status, 200, bobs.text);
    assert.equal((await first).status, 200);
  });

  it('shows the live workers only to the admin, and counts anonymous readiness probes and refused keys per address', async () => {
    const anonymousReady = await fetch(`${base}/readyz`);
    assert.equal(anonymousReady.status, 200);
    const body = (await anonymousReady.json()) as Record<string, unknown>;
    assert.equal(body.workerCount, 0);
    assert.equal('workers' in body, false, 'no hosts or pids for anyone');
    const adminReady = (await (await fetch(`${base}/readyz`, { headers: { authorization: `Bearer ${ADMIN_API_KEY}` } })).json()) as Record<
      string,
      unknown
    >;
    assert.deepEqual(adminReady.workers, []);
    await service.redis.del(redisKeys(service.config.QUEUE_PREFIX).anonymousRequests('127.0.0.1'));
    const wrong = `rtk_0000000000000000_${'A'.repeat(43)}`;
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await fetch(`${base}/v1/jobs`, { headers: { authorization: `Bearer ${wrong}` } })).status);
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429]);
    const throttled = await fetch(`${base}/v1/jobs`, { headers: { authorization: `Bearer ${wrong}` } });
    assert.ok(Number(throttled.headers.get('retry-after')) > 0);
    assert.equal((await fetch(`${base}/readyz`)).status, 429, 'anonymous probes share the budget');
    assert.equal((await service.as(ada).get('/v1/jobs')).status, 200, 'a valid key is not held back');
    assert.equal((await fetch(`${base}/readyz`, { headers: { authorization: `Bearer ${ADMIN_API_KEY}` } })).status, 200);
  });
});

describe('single-user mode and the Host it answers', () => {
  const scratch = tempDir('hosts');
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('answers only loopback names and ALLOWED_HOSTS, and refuses state changes from pages of other origins', async () => {
    const { app, close } = await testApp('hosts', scratch, { ALLOWED_HOSTS: 'box.lan' });
    try {
      const get = (host: string) => app.inject({ method: 'GET', url: '/v1/jobs', headers: { host } });
      for (const host of ['localhost:8080', '127.0.0.1:8080', '[::1]:8080', 'dashboard.localhost', 'box.lan:8080'])
        assert.equal((await get(host)).statusCode, 200, host);
      for (const host of ['attacker.example:8080', 'attacker.example', '10.0.0.5:8080', 'box.lan.attacker.example']) {
        const refused = await get(host);
        assert.equal(refused.statusCode, 421, host);
        assert.match(refused.json<{ detail: string }>().detail, /answers only to localhost/);
      }
      const submit = (origin: string) =>
        app.inject({
          method: 'POST',
          url: '/v1/jobs',
          headers: { host: 'localhost:8080', origin },
          payload: { mode: 'pretrained', weights: 'random', inputSize: 32 },
        });
      assert.equal((await submit('http://attacker.example')).statusCode, 403);
      assert.equal((await submit('null')).statusCode, 403);
      assert.equal((await submit('http://localhost:8080')).statusCode, 202);
    } finally {
      await close();
    }
  });
});
