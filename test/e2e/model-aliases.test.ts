import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { ApiKeys } from '../../common/api-keys.js';
import { seededRandom } from '../../common/random.js';
import { renderSyntheticImage } from '../../engine/data/synthetic.js';
import type { ModelAlias } from '../../schemas/model-alias.js';
import { finished, pollJob, startService, type TestService, downloadWhenMade } from '../helpers/service.js';

const ADMIN_API_KEY = 'admin-key-for-the-aliases-test-0123456789';
const spec = (seed: number) => ({
  mode: 'feature_extraction',
  weights: 'random',
  inputSize: 32,
  epochs: 2,
  seed,
  dataset: { type: 'synthetic', numClasses: 3, imagesPerClass: 8, imageSize: 32, seed: 4 },
  augmentation: { randomResizedCrop: false, horizontalFlip: false },
  checkpoints: { keepEveryN: 1 },
});

describe('model aliases', () => {
  let service: TestService;
  let alice: string;
  let bob: string;
  let jobs: string[];
  let photo: Buffer;
  before(async () => {
    service = await startService('aliases', { ADMIN_API_KEY });
    await service.startWorker();
    const keys = new ApiKeys(service.redis, service.config.QUEUE_PREFIX);
    alice = (await keys.create('alice')).key;
    bob = (await keys.create('bob')).key;
    jobs = [];
    for (const seed of [1, 2]) {
      const submitted = await service.as(alice).post('/v1/jobs').send(spec(seed));
      assert.equal(submitted.status, 202, submitted.text);
      jobs.push(submitted.body.id);
    }
    for (const id of jobs) assert.equal((await pollJob(service, id, finished)).state, 'completed');
    photo = await sharp(renderSyntheticImage(1, 3, 64, seededRandom(5)), { raw: { width: 64, height: 64, channels: 3 } })
      .png()
      .toBuffer();
  });
  after(() => service.stop());

  const predict = (key: string, url: string) => service.as(key).post(url).attach('image', photo, 'photo.png');

  it('points, predicts through, moves with a history, and serves the checkpoint of what it names now', async () => {
    const created = await service.as(alice).put('/v1/models/flowers').send({ job: jobs[0] });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.headers.location, '/v1/models/flowers');
    const viaAlias = await predict(alice, '/v1/models/flowers/predict');
    const viaJob = await predict(alice, `/v1/jobs/${jobs[0]}/predict`);
    assert.equal(viaAlias.status, 200, viaAlias.text);
    assert.deepEqual(viaAlias.body, viaJob.body, 'the alias answers as its job');

    const moved = await service.as(alice).put('/v1/models/flowers').send({ job: jobs[1], checkpoint: 1 });
    assert.equal(moved.status, 200, moved.text);
    const alias = moved.body as ModelAlias;
    assert.deepEqual([alias.job, alias.checkpoint], [jobs[1], 1]);
    assert.deepEqual(
      alias.history.map((h) => [h.job, h.checkpoint]),
      [
        [jobs[1], 1],
        [jobs[0], 'final'],
      ],
    );
    const afterMove = await predict(alice, '/v1/models/flowers/predict');
    assert.equal(afterMove.body.jobId, jobs[1]);
    assert.equal(afterMove.body.model, 'epoch-1', 'the checkpoint the alias names answers');
    const download = (await downloadWhenMade(() => service.as(alice).get('/v1/models/flowers/checkpoint'))).response;
    assert.equal(download.status, 200);
    assert.match(download.headers['content-disposition'], new RegExp(`${jobs[1]}.*epoch-1\\.tar\\.gz"`));
    const listed = await service.as(alice).get('/v1/models');
    assert.deepEqual(
      listed.body.items.map((item: ModelAlias) => [item.name, item.job]),
      [['flowers', jobs[1]]],
    );
  });

  it('refuses to purge the job an alias points at (409) and a checkpoint the job does not keep (400)', async () => {
    const purge = await service.as(alice).delete(`/v1/jobs/${jobs[1]}?purge=true`);
    assert.equal(purge.status, 409, purge.text);
    assert.match(purge.body.detail, /model alias flowers points at/);
    const missing = await service.as(alice).put('/v1/models/other').send({ job: jobs[0], checkpoint: 9 });
    assert.equal(missing.status, 400, missing.text);
    assert.deepEqual(
      missing.body.errors.map((e: { path: string }) => e.path),
      ['checkpoint'],
    );
    const badName = await service.as(alice).put('/v1/models/Bad%20Name').send({ job: jobs[0] });
    assert.equal(badName.status, 400);
  });

  it("keeps owners apart: another owner's alias and job are not found", async () => {
    assert.equal((await service.as(bob).get('/v1/models/flowers')).status, 404);
    assert.equal((await predict(bob, '/v1/models/flowers/predict')).status, 404);
    assert.equal((await service.as(bob).put('/v1/models/mine').send({ job: jobs[0] })).status, 404);
    assert.deepEqual((await service.as(bob).get('/v1/models')).body.items, []);
  });

  it('deletes an alias, after which its job can be purged', async () => {
    assert.equal((await service.as(alice).delete('/v1/models/flowers')).status, 204);
    assert.equal((await service.as(alice).get('/v1/models/flowers')).status, 404);
    assert.equal((await service.as(alice).delete(`/v1/jobs/${jobs[1]}?purge=true`)).status, 204);
  });
});
