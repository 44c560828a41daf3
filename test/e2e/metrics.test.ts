import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import supertest from 'supertest';
import { ApiKeys } from '../../common/api-keys.js';
import { keyedTestApp } from '../helpers/app.js';
import { finished, pollJob, sleep, startService, type TestService } from '../helpers/service.js';

/** The value of one series in a Prometheus text exposition, null when absent. */
function sample(text: string, series: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

describe('Prometheus metrics', () => {
  let service: TestService;
  before(async () => {
    service = await startService('metrics');
    await service.startWorker();
  });
  after(() => service.stop());

  it('counts requests by route and status, and shows the queue, the workers, kept bytes and finished jobs', async () => {
    const submitted = await service.http().post('/v1/jobs').send({ mode: 'pretrained', weights: 'random', inputSize: 32 });
    assert.equal(submitted.status, 202);
    assert.equal((await service.http().get('/v1/jobs/not-a-job')).status, 404);
    const status = await pollJob(service, submitted.body.id, finished, 120_000);
    assert.equal(status.state, 'completed', JSON.stringify(status.failure));

    // Job outcomes arrive through BullMQ's event stream: wait for the completed job to show.
    let text = '';
    const durations = 'retrain_job_duration_seconds_count{mode="pretrained",outcome="completed"}';
    for (let i = 0; i < 100 && sample(text, durations) === null; i++) {
      if (i > 0) await sleep(100);
      const response = await service.http().get('/metrics');
      assert.equal(response.status, 200);
      assert.match(String(response.headers['content-type']), /^text\/plain; version=0\.0\.4/);
      text = response.text;
    }
    assert.equal(sample(text, durations), 1, text);
    assert.equal(sample(text, 'http_requests_total{method="POST",route="/v1/jobs",status="202"}'), 1);
    assert.equal(sample(text, 'http_requests_total{method="GET",route="/v1/jobs/:id",status="404"}'), 1, 'the pattern, not the id');
    assert.ok((sample(text, 'http_request_duration_seconds_count{method="POST",route="/v1/jobs",status="202"}') ?? 0) >= 1);
    assert.equal(sample(text, 'retrain_queue_jobs{state="completed"}'), 1);
    assert.equal(sample(text, 'retrain_queue_jobs{state="waiting"}'), 0);
    const workers = text.split('\n').filter((line) => line.startsWith('retrain_workers{backend="wasm"'));
    assert.equal(workers.length, 1, text);
    assert.match(workers[0], /kernels="(onednn [\d.]+|wasm)"\} 1$/);
    assert.ok((sample(text, 'retrain_artifact_bytes{kind="models"}') ?? 0) > 90e6, 'the final ResNet-50 is counted');
    assert.ok((sample(text, 'retrain_api_process_resident_memory_bytes') ?? 0) > 0);
  });

  it("shows a running job's images per second, and drops the series when it ends", async () => {
    const dataset = { type: 'synthetic', numClasses: 2, imagesPerClass: 16, imageSize: 32, seed: 1 };
    // Augmented: the backbone runs at every step (no cached codes), so the job trains long enough to be seen.
    const augmentation = { randomResizedCrop: false, horizontalFlip: true };
    const spec = { mode: 'feature_extraction', weights: 'random', inputSize: 32, epochs: 100, batchSize: 4, dataset, augmentation };
    const submitted = await service.http().post('/v1/jobs').send(spec);
    assert.equal(submitted.status, 202, submitted.text);
    const id = submitted.body.id as string;
    const series = `retrain_job_images_per_second{job_id="${id}",mode="feature_extraction"}`;
    let rate: number | null = null;
    while (rate === null) {
      const status = await service.http().get(`/v1/jobs/${id}`);
      assert.equal(status.body.state === 'queued' || status.body.state === 'running', true, `the job ended first: ${status.body.state}`);
      rate = sample((await service.http().get('/metrics')).text, series);
      if (rate === null) await sleep(200);
    }
    assert.ok(rate > 0, `${rate} images/s`);
    const running = await service.http().get(`/v1/jobs/${id}`);
    assert.ok(running.body.progress.imagesPerSecond > 0, JSON.stringify(running.body.progress));
    await service.http().delete(`/v1/jobs/${id}`);
    const cancelled = await pollJob(service, id, finished, 120_000);
    assert.equal(cancelled.state, 'cancelled');
    assert.equal(cancelled.progress.imagesPerSecond, null);
    assert.equal(sample((await service.http().get('/metrics')).text, series), null);
  });
});

describe('Prometheus metrics with API keys', () => {
  const ADMIN_API_KEY = 'admin-key-for-the-metrics-test-0123456789';
  let api: Awaited<ReturnType<typeof keyedTestApp>>;
  before(async () => {
    api = await keyedTestApp('metrics-keys', ADMIN_API_KEY);
  });
  after(async () => {
    await api.close();
  });

  it('answers the admin key only', async () => {
    const owner = await new ApiKeys(api.redis, api.config.QUEUE_PREFIX).create('alice');
    const get = (key?: string) => {
      const request = supertest(api.app.server).get('/metrics');
      return key ? request.set('authorization', `Bearer ${key}`) : request;
    };
    assert.equal((await get()).status, 401);
    assert.equal((await get(owner.key)).status, 401, "an owner's key does not see everyone's numbers");
    const admin = await get(ADMIN_API_KEY);
    assert.equal(admin.status, 200);
    assert.match(admin.text, /^# HELP /m);
  });
});
