import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import supertest from 'supertest';
import * as tar from 'tar';
import { ApiKeys } from '../../common/api-keys.js';
import { QueueName } from '../../common/queue-facade.js';
import { whenReady } from '../../common/redis-connection.js';
import { Problem } from '../../schemas/problem.js';
import { testApp } from '../helpers/app.js';
import { writeMessyDataset } from '../helpers/images.js';
import { sleep } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';

const ADMIN_API_KEY = 'admin-key-for-the-limits-test-0123456789';
const spec = (seed: number) => ({ mode: 'pretrained', weights: 'random', inputSize: 32, seed });

/** The API with keys on and the given limits, no worker (jobs stay queued), and a key per owner. */
async function limitedApi(name: string, scratch: string, env: Record<string, string>) {
  const api = await testApp(name, scratch, { ADMIN_API_KEY, ...env });
  await whenReady(api.redis, 5000);
  const keys = new ApiKeys(api.redis, api.config.QUEUE_PREFIX);
  const as = (key: string) => ({
    get: (url: string) => supertest(api.app.server).get(url).set('authorization', `Bearer ${key}`),
    post: (url: string) => supertest(api.app.server).post(url).set('authorization', `Bearer ${key}`),
    delete: (url: string) => supertest(api.app.server).delete(url).set('authorization', `Bearer ${key}`),
  });
  return { ...api, keys, as };
}

describe('rate limits per key', () => {
  const scratch = tempDir('rate-limits');
  let api: Awaited<ReturnType<typeof limitedApi>>;
  before(async () => {
    api = await limitedApi('rate-limits', scratch, { RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW_MS: '1000' });
  });
  after(async () => {
    await api.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("answers 429 with Retry-After past the key's budget, spares other keys and the admin, and resets", async () => {
    const alice = api.as((await api.keys.create('alice')).key);
    const bob = api.as((await api.keys.create('bob')).key);
    for (let i = 0; i < 3; i++) assert.equal((await alice.get('/v1/jobs')).status, 200);
    const refused = await alice.get('/v1/jobs');
    assert.equal(refused.status, 429, refused.text);
    assert.match(refused.headers['content-type'], /^application\/problem\+json/);
    assert.ok(Number(refused.headers['retry-after']) >= 1, `Retry-After: ${refused.headers['retry-after']}`);
    Problem.parse(refused.body);
    assert.equal((await bob.get('/v1/jobs')).status, 200, 'another owner has their own budget');
    const aliceAgain = api.as((await api.keys.create('alice')).key);
    assert.equal((await aliceAgain.get('/v1/jobs')).status, 200, 'and so has another key of the same owner');
    for (let i = 0; i < 6; i++) assert.equal((await api.as(ADMIN_API_KEY).get('/v1/jobs')).status, 200, 'the admin is exempt');
    await sleep(Number(refused.headers['retry-after']) * 1000);
    assert.equal((await alice.get('/v1/jobs')).status, 200, 'the window has passed');
  });
});

describe('quotas and the queue cap', () => {
  const scratch = tempDir('quotas');
  let api: Awaited<ReturnType<typeof limitedApi>>;
  let archive: Buffer;
  before(async () => {
    const pets = path.join(scratch, 'pets');
    mkdirSync(path.join(pets, 'pets'), { recursive: true });
    await writeMessyDataset(path.join(pets, 'pets'));
    const unpackedBytes = readdirSync(pets, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .reduce((sum, entry) => sum + statSync(path.join(entry.parentPath, entry.name)).size, 0);
    await tar.c({ gzip: true, file: path.join(scratch, 'pets.tar.gz'), cwd: pets }, ['pets']);
    archive = readFileSync(path.join(scratch, 'pets.tar.gz'));
    api = await limitedApi('quotas', scratch, {
      QUOTA_OPEN_JOBS: '2',
      QUEUE_MAX_WAITING: '6',
      QUOTA_DATASET_BYTES: String(Math.round(unpackedBytes * 1.5)),
    });
  });
  after(async () => {
    await api.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('holds an owner to their quota of open jobs, and frees it when one is cancelled', async () => {
    const alice = api.as((await api.keys.create('alice')).key);
    const first = await alice.post('/v1/jobs').send(spec(1));
    assert.equal(first.status, 202, first.text);
    assert.equal((await alice.post('/v1/jobs').send(spec(2))).status, 202);
    const refused = await alice.post('/v1/jobs').send(spec(3));
    assert.equal(refused.status, 429, refused.text);
    assert.deepEqual([refused.body.quota, refused.body.limit], ['openJobs', 2]);
    assert.equal((await alice.get('/v1/jobs')).body.total, 2, 'the refused job left no trace');
    assert.equal((await alice.delete(`/v1/jobs/${first.body.id}`)).status, 202);
    assert.equal((await alice.post('/v1/jobs').send(spec(3))).status, 202, 'a cancelled job no longer counts');
    const bob = api.as((await api.keys.create('bob')).key);
    assert.equal((await bob.post('/v1/jobs').send(spec(1))).status, 202, 'quotas are per owner');
  });

  it('answers 503 with Retry-After once the queue holds QUEUE_MAX_WAITING jobs', async () => {
    const admin = api.as(ADMIN_API_KEY);
    const queue = () => api.queues.get(QueueName.Training);
    let waiting = await queue().getWaitingCount();
    while (waiting < 6) {
      assert.equal((await admin.post('/v1/jobs').send(spec(100 + waiting))).status, 202);
      waiting = await queue().getWaitingCount();
    }
    const refused = await admin.post('/v1/jobs').send(spec(99));
    assert.equal(refused.status, 503, refused.text);
    assert.equal(refused.headers['retry-after'], '10');
    assert.match(refused.body.detail, /6 waiting jobs/);
    assert.equal(await queue().getWaitingCount(), 6);
  });

  it("refuses an upload past the owner's dataset quota with 413, and takes it again after a delete", async () => {
    const carol = api.as((await api.keys.create('carol')).key);
    const upload = () => carol.post('/v1/datasets').set('content-type', 'application/gzip').send(archive);
    const first = await upload();
    assert.equal(first.status, 201, first.text);
    const refused = await upload();
    assert.equal(refused.status, 413, refused.text);
    assert.match(refused.body.detail, /quota/);
    assert.equal((await carol.get('/v1/datasets')).body.items.length, 1, 'nothing of the refused upload was kept');
    assert.equal((await carol.delete(`/v1/datasets/${first.body.id}`)).status, 204);
    assert.equal((await upload()).status, 201);
  });
});

describe('the idle cut-off', () => {
  const scratch = tempDir('idle-timeout');
  let api: Awaited<ReturnType<typeof limitedApi>>;
  before(async () => {
    api = await limitedApi('idle-timeout', scratch, { API_IDLE_TIMEOUT_MS: '100' });
  });
  after(async () => {
    await api.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('never closes a connection while the server unpacks and checks its upload, however long that takes', async () => {
    const folder = path.join(scratch, 'photos');
    for (const label of ['cats', 'dogs']) {
      mkdirSync(path.join(folder, label), { recursive: true });
      for (let i = 0; i < 200; i++) {
        const noise = { type: 'gaussian' as const, mean: 128, sigma: 40 };
        await sharp({ create: { width: 64, height: 64, channels: 3, background: '#000', noise } })
          .png()
          .toFile(path.join(folder, label, `${i}.png`));
      }
    }
    const file = path.join(scratch, 'photos.tar.gz');
    await tar.c({ gzip: true, file, cwd: folder }, ['cats', 'dogs']);
    // 400 images take the server far longer than the 100 ms cut-off to unpack and preflight.
    const admin = api.as(ADMIN_API_KEY);
    const response = await admin.post('/v1/datasets').set('content-type', 'application/gzip').send(readFileSync(file));
    assert.equal(response.status, 201, response.text);
    assert.equal(response.body.preflight.usable, 400);
  });
});
