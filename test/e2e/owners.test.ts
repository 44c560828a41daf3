import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import supertest from 'supertest';
import * as tar from 'tar';
import { ApiKeys } from '../../common/api-keys.js';
import { Problem } from '../../schemas/problem.js';
import { testApp } from '../helpers/app.js';
import { writeMessyDataset } from '../helpers/images.js';
import { completedJob, startService, type TestService } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';

const ADMIN_API_KEY = 'admin-key-for-the-owners-test-0123456789';

describe('API keys and owners', () => {
  let service: TestService;
  let scratch: string;
  let keys: ApiKeys;
  let alice: string;
  let bob: string;
  let aliceJob: string;
  let aliceUpload: string;

  before(async () => {
    service = await startService('owners', { ADMIN_API_KEY });
    await service.startWorker();
    keys = new ApiKeys(service.redis, service.config.QUEUE_PREFIX);
    alice = (await keys.create('alice')).key;
    bob = (await keys.create('bob')).key;
    scratch = tempDir('owners');
    mkdirSync(path.join(scratch, 'pets'), { recursive: true });
    await writeMessyDataset(path.join(scratch, 'pets'));
    const archive = path.join(scratch, 'pets.tar.gz');
    await tar.c({ gzip: true, file: archive, cwd: scratch }, ['pets']);
    const uploaded = await service.as(alice).post('/v1/datasets').set('content-type', 'application/gzip').send(readFileSync(archive));
    assert.equal(uploaded.status, 201, uploaded.text);
    assert.equal(uploaded.body.owner, 'alice');
    aliceUpload = uploaded.body.id;
    const submitted = await service.as(alice).post('/v1/jobs').send({ mode: 'pretrained', weights: 'random', inputSize: 32 });
    assert.equal(submitted.status, 202, submitted.text);
    aliceJob = submitted.body.id;
  });
  after(async () => {
    await service.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('answers 401 problem+json with a Bearer challenge without a valid key, and health probes to anyone', async () => {
    const anonymous = () => supertest(service.app.server);
    for (const request of [
      anonymous().get('/v1/jobs'),
      anonymous().post('/v1/jobs').send({ mode: 'pretrained' }),
      service.as('not-a-key').get('/v1/jobs'),
      service.as(`rtk_0123456789abcdef_${'x'.repeat(43)}`).get('/v1/datasets'),
      service.as(ADMIN_API_KEY.slice(0, -1)).get('/v1/me'),
    ]) {
      const response = await request;
      assert.equal(response.status, 401, response.text);
      assert.match(response.headers['content-type'], /^application\/problem\+json/);
      assert.equal(response.headers['www-authenticate'], 'Bearer realm="retrain"');
      Problem.parse(response.body);
    }
    assert.equal((await anonymous().get('/healthz')).status, 200);
    assert.deepEqual((await service.as(alice).get('/v1/me')).body, { owner: 'alice', admin: false, auth: 'api-keys' });
    assert.deepEqual((await service.http().get('/v1/me')).body, { owner: 'admin', admin: true, auth: 'api-keys' });
  });

  it("answers 404 for another owner's job on every job route, and serves the owner and the admin", async () => {
    const { id } = await completedJob(
      { ...service, http: () => service.as(alice) },
      { mode: 'pretrained', weights: 'random', inputSize: 32, seed: 3 },
    );
    const image = await sharp({ create: { width: 40, height: 40, channels: 3, background: '#80a040' } })
      .png()
      .toBuffer();
    const routes = [
      (key: string) => service.as(key).get(`/v1/jobs/${id}`),
      (key: string) => service.as(key).get(`/v1/jobs/${id}/summary`),
      (key: string) => service.as(key).get(`/v1/jobs/${id}/metrics`),
      (key: string) => service.as(key).get(`/v1/jobs/${id}/checkpoint`),
      (key: string) => service.as(key).get(`/v1/jobs/${id}/checkpoint?format=safetensors`),
      // A finished job's event stream: its status, its final state, then the end.
      (key: string) => service.as(key).get(`/v1/jobs/${id}/events`),
      (key: string) => service.as(key).post(`/v1/jobs/${id}/predict`).attach('image', image, 'x.png'),
    ];
    for (const [i, route] of routes.entries()) {
      const theirs = await route(bob);
      assert.equal(theirs.status, 404, `route ${i}: ${theirs.status}`);
      Problem.parse(theirs.body);
      assert.equal((await route(alice)).status, 200, `the owner, route ${i}`);
      assert.equal((await route(ADMIN_API_KEY)).status, 200, `the admin, route ${i}`);
    }
    const listedForBob = await service.as(bob).get('/v1/jobs');
    assert.deepEqual([listedForBob.body.total, listedForBob.body.items.length], [0, 0]);
    const listedForAlice = await service.as(alice).get('/v1/jobs');
    assert.ok(listedForAlice.body.items.every((job: { owner: string }) => job.owner === 'alice'));
    assert.ok(listedForAlice.body.items.some((job: { id: string }) => job.id === id));
    const listedForAdmin = await service.http().get('/v1/jobs?limit=100');
    assert.ok(listedForAdmin.body.items.some((job: { id: string }) => job.id === id));

    assert.equal((await service.as(bob).delete(`/v1/jobs/${id}?purge=true`)).status, 404);
    assert.equal((await service.as(alice).delete(`/v1/jobs/${id}?purge=true`)).status, 204);
    assert.equal((await service.as(alice).get(`/v1/jobs/${id}`)).status, 404, 'purged');
    assert.equal(await service.store.stat(`jobs/${id}/final/metadata.json`), null, 'and its artifacts with it');
  });

  it('lets only the owner (or the admin) cancel a job, and keeps Idempotency-Keys per owner', async () => {
    assert.equal((await service.as(bob).delete(`/v1/jobs/${aliceJob}`)).status, 404);
    const spec = { mode: 'pretrained', weights: 'random', inputSize: 32, seed: 11 };
    const first = await service.as(alice).post('/v1/jobs').set('idempotency-key', 'same').send(spec);
    const other = await service.as(bob).post('/v1/jobs').set('idempotency-key', 'same').send(spec);
    assert.deepEqual([first.status, other.status], [202, 202]);
    assert.notEqual(first.body.id, other.body.id);
    assert.equal((await service.as(bob).delete(`/v1/jobs/${other.body.id}`)).status, 202);
    assert.equal((await service.http().delete(`/v1/jobs/${first.body.id}`)).status, 202, 'the admin cancels anyone’s job');
  });

  it("hides another owner's uploads: listing, reading, deleting, preflight, jobs and folder paths", async () => {
    assert.deepEqual((await service.as(bob).get('/v1/datasets')).body.items, []);
    assert.equal((await service.as(alice).get('/v1/datasets')).body.items.length, 1);
    assert.equal((await service.as(bob).get(`/v1/datasets/${aliceUpload}`)).status, 404);
    assert.equal((await service.as(bob).delete(`/v1/datasets/${aliceUpload}`)).status, 404);
    const upload = { type: 'upload', id: aliceUpload };
    for (const request of [
      service.as(bob).post('/v1/datasets/preflight').send({ dataset: upload }),
      service.as(bob).post('/v1/jobs').send({ mode: 'feature_extraction', inputSize: 32, dataset: upload }),
      service.as(bob).post('/v1/summary').send({ mode: 'feature_extraction', inputSize: 32, dataset: upload }),
    ]) {
      const response = await request;
      assert.equal(response.status, 400, response.text);
      assert.deepEqual(
        response.body.errors.map((e: { path: string }) => e.path),
        ['dataset.id'],
      );
    }
    for (const folder of [`uploads/${aliceUpload}`, 'uploads', 'uploads/.incoming']) {
      const response = await service
        .as(alice)
        .post('/v1/datasets/preflight')
        .send({ dataset: { type: 'folder', path: folder } });
      assert.equal(response.status, 400, `${folder}: ${response.text}`);
      assert.equal(response.body.errors[0].path, 'dataset.path');
    }
    assert.equal((await service.as(alice).post('/v1/datasets/preflight').send({ dataset: upload })).status, 200);
  });

  it('refuses to delete an upload while a job queued on it may still train, and deletes it after', async () => {
    const job = await service
      .as(alice)
      .post('/v1/jobs')
      .send({ mode: 'feature_extraction', weights: 'random', inputSize: 32, epochs: 50, dataset: { type: 'upload', id: aliceUpload } });
    assert.equal(job.status, 202, job.text);
    const refused = await service.as(alice).delete(`/v1/datasets/${aliceUpload}`);
    assert.equal(refused.status, 409, refused.text);
    assert.deepEqual(refused.body.jobs, [job.body.id]);
    assert.equal((await service.as(alice).delete(`/v1/jobs/${job.body.id}`)).status, 202);
    assert.equal((await service.as(alice).delete(`/v1/datasets/${aliceUpload}`)).status, 204);
  });

  it('stops accepting a revoked key at once', async () => {
    const carol = await keys.create('carol');
    assert.equal((await service.as(carol.key).get('/v1/jobs')).status, 200);
    assert.equal(await keys.revoke(carol.id), true);
    assert.equal((await service.as(carol.key).get('/v1/jobs')).status, 401);
  });
});

describe('auth mode at start-up', () => {
  const scratch = tempDir('auth-mode');
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('refuses to start on a non-loopback address without API keys', async () => {
    await assert.rejects(testApp('auth-mode', scratch, { HOST: '0.0.0.0' }), /refusing to listen on 0\.0\.0\.0 without API keys/);
  });

  it('serves a loopback listener without keys as the single user', async () => {
    const { app, close } = await testApp('auth-mode', scratch, { HOST: '127.0.0.1' });
    try {
      const me = await app.inject({ method: 'GET', url: '/v1/me' });
      assert.deepEqual(me.json(), { owner: 'local', admin: true, auth: 'single-user' });
    } finally {
      await close();
    }
  });
});
