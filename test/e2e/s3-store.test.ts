import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import sharp from 'sharp';
import { startS3Server, type S3Server } from '../helpers/s3-server.js';
import { binary, completedJob, startService, type TestService } from '../helpers/service.js';

describe('artifacts in an S3-compatible object store (ARTIFACT_STORE=s3://...)', () => {
  let server: S3Server;
  let service: TestService;

  before(async () => {
    server = await startS3Server();
    service = await startService('s3', server.env(`service-${process.pid}`));
    await service.startWorker();
  });
  after(async () => {
    await service?.stop();
    await server?.stop();
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

    // Nothing went to the local artifact folder: every artifact is an object.
    const localDir = service.config.ARTIFACTS_DIR;
    assert.ok(!existsSync(localDir) || readdirSync(localDir).length === 0, `${localDir} should be empty`);
    for (const key of ['summary.json', 'metrics.json', 'final/weights.bin', 'final/metadata.json']) {
      assert.ok(await service.store.stat(`jobs/${id}/${key}`), key);
    }
    assert.deepEqual(await service.store.list(`jobs/${id}/checkpoints`), ['epoch-0001', 'epoch-0002']);
    assert.ok((await service.store.list('feature-cache')).length >= 2, 'the feature cache is in the bucket too');

    const summary = await service.http().get(`/v1/jobs/${id}/summary`);
    assert.equal(summary.status, 200);
    assert.equal(summary.body.totals.trainableParams, 2048 * 3 + 3);

    for (const query of ['', '?epoch=1']) {
      const archive = await service.http().get(`/v1/jobs/${id}/checkpoint${query}`).buffer(true).parse(binary);
      assert.equal(archive.status, 200, query);
      assert.equal(archive.headers['content-type'], 'application/gzip');
      assert.equal(Number(archive.headers['content-length']), (archive.body as Buffer).length);
      const again = await service.http().get(`/v1/jobs/${id}/checkpoint${query}`).set('if-none-match', archive.headers.etag);
      assert.equal(again.status, 304, 'the kept archive keeps its ETag');
    }
    const safetensors = await service.http().get(`/v1/jobs/${id}/checkpoint?format=safetensors`).buffer(true).parse(binary);
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
});
