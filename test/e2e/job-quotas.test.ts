import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import sharp from 'sharp';
import { ApiKeys } from '../../common/api-keys.js';
import { PREDICT_MAX_REQUEST_BYTES } from '../../services/api/routes/predict/index.js';
import { downloadWhenMade, finished, pollJob, sleep, startService, type TestService } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';

const ADMIN_API_KEY = 'admin-key-for-the-job-quotas-test-0123456789';
const SMALL = { type: 'synthetic', numClasses: 2, imagesPerClass: 6, imageSize: 32, seed: 5 };

/** A multipart predict request that sends its first image part and then holds: it keeps its place in the queue. */
function heldPrediction(port: number, key: string, jobId: string): net.Socket {
  const socket = net.connect(port, '127.0.0.1');
  const boundary = 'held-prediction';
  socket.write(
    `POST /v1/jobs/${jobId}/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\n` +
      `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: 100000\r\n\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n` +
      'x'.repeat(100),
  );
  socket.on('error', () => undefined);
  return socket;
}

describe("an owner's models and checkpoints, and predictions, within their bounds while jobs run", () => {
  let service: TestService;
  let port: number;
  let keys: ApiKeys;

  before(async () => {
    service = await startService('job-quotas', { ADMIN_API_KEY, QUOTA_ARTIFACT_BYTES: String(450_000_000), OWNER_SHARE_PERCENT: '25' });
    await service.startWorker();
    keys = new ApiKeys(service.redis, service.config.QUEUE_PREFIX);
    await service.app.listen({ host: '127.0.0.1', port: 0 });
    port = (service.app.server.address() as AddressInfo).port;
  });
  after(() => service.stop());

  it('stops a job before a checkpoint would take its owner past the artifact quota, naming it and keeping what it saved', async () => {
    const carol = (await keys.create('carol')).key;
    const submitted = await service
      .as(carol)
      .post('/v1/jobs')
      .send({
        // Its frozen layers' start weights once (~35 MB), layer4 and the head in each checkpoint (~64.5 MB,
        // the latest with twice that of Adam's state): epochs 1 and 2 fit in 450 MB (~422), the third would not (~486).
        mode: 'fine_tuning',
        fineTuning: { trainableFrom: 'layer4' },
        weights: 'random',
        inputSize: 32,
        epochs: 4,
        batchSize: 4,
        dataset: SMALL,
        checkpoints: { keepEveryN: 1 },
      });
    assert.equal(submitted.status, 202, submitted.text);
    const status = await pollJob(service, submitted.body.id, finished, 300_000);
    assert.equal(status.state, 'failed');
    assert.equal(status.attempts, 1, 'no retry: another attempt would meet the same quota');
    assert.match(
      status.failure?.reason ?? '',
      /stopped before writing epoch 3's checkpoint .*artifact quota \(QUOTA_ARTIFACT_BYTES\) is 450000000/,
    );
    const { response: kept } = await downloadWhenMade(() =>
      service.as(carol).get(`/v1/jobs/${status.id}/checkpoint?epoch=2&format=safetensors`),
    );
    assert.equal(kept.status, 200, 'epoch 2 is kept whole');
    const checkpoints = readdirSync(path.join(service.config.ARTIFACTS_DIR, 'jobs', status.id, 'checkpoints'));
    assert.deepEqual(checkpoints.sort(), ['epoch-0001', 'epoch-0002']);
    const next = await service.as(carol).post('/v1/jobs').send({ mode: 'pretrained', weights: 'random', inputSize: 32 });
    assert.equal(next.status, 202, 'under the quota still: new jobs are taken');
  });

  it("holds each owner's predictions to a share of the queue before their images arrive, and each request to a size", async () => {
    const [ada, bob] = [(await keys.create('ada')).key, (await keys.create('bob')).key];
    const completed = async (key: string) => {
      const submitted = await service.as(key).post('/v1/jobs').send({ mode: 'pretrained', weights: 'random', inputSize: 32 });
      return (await pollJob(service, submitted.body.id, finished, 300_000)).id;
    };
    const [adaJob, bobJob] = [await completed(ada), await completed(bob)];
    const image = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#808080' } })
      .png()
      .toBuffer();
    const held = [0, 1, 2, 3].map(() => heldPrediction(port, ada, adaJob));
    try {
      await sleep(500);
      const fifth = await service.as(ada).post(`/v1/jobs/${adaJob}/predict`).attach('image', image, 'x.png');
      assert.equal(fifth.status, 429, fifth.text);
      assert.match(fifth.body.detail, /you hold 4 of this API process's 16 requests queued for its predict thread/);
      const bobs = await service.as(bob).post(`/v1/jobs/${bobJob}/predict`).attach('image', image, 'x.png');
      assert.equal(bobs.status, 200, bobs.text);
    } finally {
      held.forEach((socket) => socket.destroy());
    }
    const huge = await service
      .as(bob)
      .post(`/v1/jobs/${bobJob}/predict`)
      .set('content-type', 'multipart/form-data; boundary=x')
      .set('content-length', String(PREDICT_MAX_REQUEST_BYTES + 2 * 1024 * 1024))
      .send('--x--');
    assert.equal(huge.status, 413, huge.text);
  });
});

describe('a full disk at the final save', () => {
  const root = process.getuid?.() === 0;
  const mount = tempDir('full-disk');
  let service: TestService;

  before(async () => {
    if (!root) return;
    mkdirSync(path.join(mount, 'artifacts'));
    // Room for the summary, not for the final model's 200 MB (its tfjs weights, then its safetensors).
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=150m', 'tmpfs', path.join(mount, 'artifacts')]);
    service = await startService('full-disk', { ARTIFACTS_DIR: path.join(mount, 'artifacts') });
    await service.startWorker();
  });
  after(async () => {
    if (root) {
      await service?.stop();
      execFileSync('umount', [path.join(mount, 'artifacts')]);
    }
    rmSync(mount, { recursive: true, force: true });
  });

  it(
    'fails the job at once with the reason, and leaves no partial model',
    { skip: root ? false : 'mounting a small tmpfs needs root (CI runs as root)' },
    async () => {
      const submitted = await service.http().post('/v1/jobs').send({ mode: 'pretrained', weights: 'random', inputSize: 32 });
      assert.equal(submitted.status, 202);
      const status = await pollJob(service, submitted.body.id, finished, 300_000);
      assert.equal(status.state, 'failed');
      assert.equal(status.attempts, 1, 'every attempt would meet the same full disk');
      assert.equal(status.failure?.reason, 'the artifact store is full: the final model could not be written');
      assert.equal(existsSync(path.join(mount, 'artifacts', 'jobs', status.id, 'final')), false, 'no half-written model');
      const download = await service.http().get(`/v1/jobs/${status.id}/checkpoint`);
      assert.equal(download.status, 409);
      assert.equal(
        download.body.detail,
        `job ${status.id} failed: the artifact store is full: the final model could not be written; it has no final model`,
      );
    },
  );
});
