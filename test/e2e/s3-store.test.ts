import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import * as tar from 'tar';
import { MESSY_BAD_FILES, writeMessyDataset } from '../helpers/images.js';
import { startS3Server, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/torch.js';
import { binary, completedJob, finished, pollJob, startService, type TestService, downloadWhenMade } from '../helpers/service.js';
import { testApp } from '../helpers/app.js';

describe('two hosts sharing only Redis and an S3-compatible object store (ARTIFACT_STORE=s3://...)', () => {
  let server: S3Server;
  let service: TestService;
  /** The worker's host: its own DATA_DIR and ARTIFACTS_DIR, nothing shared with the API's but Redis and the bucket. */
  let workerHost: string;

  before(async () => {
    server = await startS3Server();
    service = await startService('s3', server.env(`service-${process.pid}`));
    workerHost = tempDir('worker-host');
    await service.startWorker({ DATA_DIR: path.join(workerHost, 'data'), ARTIFACTS_DIR: path.join(workerHost, 'artifacts') });
  });
  after(async () => {
    await service?.stop();
    await server?.stop();
    rmSync(workerHost, { recursive: true, force: true });
  });

  it('trains a job whose checkpoints, summary, metrics and downloads live in the bucket, and purges them', async () => {
    const { id, metrics } = await completedJob(service, {
      mode: 'feature_extraction',
      weights: 'random',
      inputSize: 32,
      epochs: 2,
      checkpoints: { keepEveryN: 1 },
      // No augmentation: the backbone's codes are cached, in the bucket.
      augmentation: { randomResizedCrop: false, horizontalFlip: false },
      dataset: { type: 'synthetic', numClasses: 3, imagesPerClass: 8, imageSize: 40, seed: 5 },
    });
    assert.deepEqual(
      metrics.epochs.map((e) => e.epoch),
      [1, 2],
    );
    assert.equal(metrics.featureCache?.hit, false, 'the CNN codes were computed and stored');

    // Nothing went to either host's artifact folder: every artifact is an object.
    for (const localDir of [service.config.ARTIFACTS_DIR, path.join(workerHost, 'artifacts')]) {
      assert.ok(!existsSync(localDir) || readdirSync(localDir).length === 0, `${localDir} should be empty`);
    }
    for (const key of ['summary.json', 'metrics.json', 'final/weights.bin', 'final/metadata.json']) {
      assert.ok(await service.store.stat(`jobs/${id}/${key}`), key);
    }
    assert.deepEqual(await service.store.list(`jobs/${id}/checkpoints`), ['epoch-0001', 'epoch-0002']);
    assert.ok((await service.store.list('feature-cache')).length >= 2, 'the feature cache is in the bucket too');

    const summary = await service.http().get(`/v1/jobs/${id}/summary`);
    assert.equal(summary.status, 200);
    assert.equal(summary.body.totals.trainableParams, 2048 * 3 + 3);

    for (const query of ['', '?epoch=1']) {
      const archive = (await downloadWhenMade(() => service.http().get(`/v1/jobs/${id}/checkpoint${query}`).buffer(true).parse(binary)))
        .response;
      assert.equal(archive.status, 200, query);
      assert.equal(archive.headers['content-type'], 'application/gzip');
      assert.equal(Number(archive.headers['content-length']), (archive.body as Buffer).length);
      const again = await service.http().get(`/v1/jobs/${id}/checkpoint${query}`).set('if-none-match', archive.headers.etag);
      assert.equal(again.status, 304, 'the kept archive keeps its ETag');
    }
    const safetensors = (
      await downloadWhenMade(() => service.http().get(`/v1/jobs/${id}/checkpoint?format=safetensors`).buffer(true).parse(binary))
    ).response;
    assert.equal(safetensors.status, 200);
    const headerBytes = Number((safetensors.body as Buffer).readBigUInt64LE(0));
    assert.ok(JSON.parse((safetensors.body as Buffer).subarray(8, 8 + headerBytes).toString())['fc.weight'], 'torchvision names');

    const image = await sharp({ create: { width: 40, height: 40, channels: 3, background: { r: 200, g: 30, b: 30 } } })
      .png()
      .toBuffer();
    const predicted = await service.http().post(`/v1/jobs/${id}/predict`).attach('image', image, 'red.png');
    assert.equal(predicted.status, 200, predicted.text);
    assert.equal(predicted.body.predictions[0].top.length, 3);

    const purged = await service.http().delete(`/v1/jobs/${id}?purge=true`);
    assert.equal(purged.status, 204, purged.text);
    assert.equal(await service.store.stat(`jobs/${id}/summary.json`), null);
    assert.deepEqual(await service.store.list(`jobs/${id}/checkpoints`), []);
  });

  it('trains on an upload one API host received, submitted through another: each other host fetches it from the bucket', async () => {
    const scratch = tempDir('s3-upload');
    // A second API process on a third host: same Redis and bucket, its own DATA_DIR.
    const otherApi = await testApp('s3', scratch, { ...service.env, DATA_DIR: path.join(scratch, 'other-api'), LOG_LEVEL: 'silent' });
    try {
      await writeMessyDataset(path.join(scratch, 'pets'));
      const archive = path.join(scratch, 'pets.tar.gz');
      await tar.c({ gzip: true, file: archive, cwd: scratch }, ['pets']);
      const created = await service
        .http()
        .post('/v1/datasets?name=pets')
        .set('content-type', 'application/gzip')
        .send(readFileSync(archive));
      assert.equal(created.status, 201, created.text);
      const { id } = created.body as { id: string };
      assert.ok(await service.store.stat(`uploads/${id}.tar`), 'published to the bucket');

      const seen = await otherApi.app.inject({ method: 'GET', url: `/v1/datasets/${id}` });
      assert.equal(seen.statusCode, 200, 'the record is in the store, seen by every API process');
      assert.equal(seen.json<{ images: number }>().images, (created.body as { images: number }).images);
      const submitted = await otherApi.app.inject({
        method: 'POST',
        url: '/v1/jobs',
        payload: { mode: 'feature_extraction', weights: 'random', inputSize: 32, epochs: 1, dataset: { type: 'upload', id } },
      });
      assert.equal(submitted.statusCode, 202, submitted.body);
      const summary = await otherApi.app.inject({
        method: 'POST',
        url: '/v1/summary?depth=0',
        payload: { mode: 'feature_extraction', weights: 'random', inputSize: 32, dataset: { type: 'upload', id } },
      });
      assert.equal(summary.json<{ numClasses: number }>().numClasses, 2);
      const preflight = await otherApi.app.inject({
        method: 'POST',
        url: '/v1/datasets/preflight',
        payload: { dataset: { type: 'upload', id } },
      });
      assert.deepEqual(preflight.json(), (created.body as { preflight: unknown }).preflight, "the record's own report");
      const otherCache = path.join(scratch, 'other-api', '.upload-cache');
      assert.equal(existsSync(otherCache), false, 'submitting, summarising and preflighting read its record: nothing was fetched');
      const stricter = await otherApi.app.inject({
        method: 'POST',
        url: '/v1/datasets/preflight',
        payload: { dataset: { type: 'upload', id }, minImagesPerClass: 50 },
      });
      assert.deepEqual(stricter.json<{ smallClasses: string[] }>().smallClasses, ['cats', 'dogs']);
      assert.deepEqual(readdirSync(path.join(otherCache, id)).sort(), ['cats', 'dogs'], 'other options read the files: fetched then');
      const status = await pollJob(service, submitted.json<{ id: string }>().id, finished);
      assert.equal(status.state, 'completed', JSON.stringify(status.failure));
      assert.deepEqual(
        Object.fromEntries(status.skippedFiles.map((s) => [s.file, s.reason])),
        MESSY_BAD_FILES,
        'the same files as on the API',
      );
      const fetched = path.join(workerHost, 'data', '.upload-cache', id);
      assert.deepEqual(readdirSync(fetched).sort(), ['cats', 'dogs']);
      assert.ok(!existsSync(path.join(workerHost, 'data', 'uploads')), "the upload area stays the receiving host's");

      assert.equal((await service.http().delete(`/v1/datasets/${id}`)).status, 204);
      assert.equal(await service.store.stat(`uploads/${id}.tar`), null, 'deleted from the bucket too');
    } finally {
      await otherApi.app.close();
      await otherApi.queues.close();
      otherApi.redis.disconnect();
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
