import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import supertest from 'supertest';
import { ApiKeys } from '../../common/api-keys.js';
import { keyedTestApp } from '../helpers/app.js';

describe('the queue admin (bull-board) at /admin/queues', () => {
  const ADMIN_API_KEY = 'admin-key-for-the-queue-admin-test-0123456789';
  let api: Awaited<ReturnType<typeof keyedTestApp>>;
  const basic = (password: string) => `Basic ${Buffer.from(`ops:${password}`).toString('base64')}`;
  before(async () => {
    api = await keyedTestApp('queue-admin', ADMIN_API_KEY);
  });
  after(async () => {
    await api.close();
  });

  it('asks a browser for the admin key and lets nobody else in', async () => {
    const owner = await new ApiKeys(api.redis, api.config.QUEUE_PREFIX).create('alice');
    const page = () => supertest(api.app.server).get('/admin/queues');
    const anonymous = await page();
    assert.equal(anonymous.status, 401);
    assert.match(String(anonymous.headers['www-authenticate']), /^Basic realm="retrain admin"/);
    assert.equal((await page().set('authorization', basic(owner.key))).status, 401, "an owner's key is no admin key");
    assert.equal((await page().set('authorization', `Bearer ${owner.key}`)).status, 401);
    assert.equal((await page().set('authorization', basic('wrong'))).status, 401);
    const admin = await page().set('authorization', basic(ADMIN_API_KEY));
    assert.equal(admin.status, 200);
    assert.match(admin.text, /<title>retrain queues<\/title>|Bull Dashboard/);
    assert.equal((await page().set('authorization', `Bearer ${ADMIN_API_KEY}`)).status, 200);
  });

  it("lists the training queue's jobs read-only, and leaves them out of the API's OpenAPI document", async () => {
    const submitted = await supertest(api.app.server)
      .post('/v1/jobs')
      .set('authorization', `Bearer ${ADMIN_API_KEY}`)
      .send({ mode: 'pretrained', weights: 'random', inputSize: 32 });
    assert.equal(submitted.status, 202, submitted.text);
    const listed = await supertest(api.app.server)
      .get('/admin/queues/api/queues?activeQueue=training&status=waiting')
      .set('authorization', basic(ADMIN_API_KEY));
    assert.equal(listed.status, 200, listed.text);
    const training = (
      listed.body.queues as Array<{ name: string; readOnlyMode: boolean; jobs: Array<{ id: string }>; counts: { waiting: number } }>
    ).find((q) => q.name === 'training');
    assert.ok(training, JSON.stringify(listed.body));
    assert.equal(training.readOnlyMode, true);
    assert.equal(training.counts.waiting, 1);
    assert.deepEqual(
      training.jobs.map((j) => j.id),
      [submitted.body.id],
    );
    const clean = await supertest(api.app.server)
      .put('/admin/queues/api/queues/training/clean/waiting')
      .set('authorization', basic(ADMIN_API_KEY));
    assert.ok(clean.status >= 400 && clean.status < 500, `read-only: ${clean.status}`);
    const spec = await supertest(api.app.server).get('/openapi.json');
    assert.equal(spec.status, 200);
    assert.deepEqual(
      Object.keys(spec.body.paths as object).filter((p) => p.startsWith('/admin')),
      [],
    );
  });
});
