import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { QueueName, Queues } from '../../common/queue-facade.js';
import { startService, type TestService } from '../helpers/service.js';

const synthetic = { type: 'synthetic', numClasses: 3, imagesPerClass: 4, imageSize: 32 };
const valid = { mode: 'feature_extraction', weights: 'random', inputSize: 32, epochs: 1, dataset: synthetic };

/**
 * [description, body, the field path the problem must name]. test/schemas/job-spec.test.ts holds the
 * whole table; these are the ones that need the server (the dataset on disk) or show the HTTP shape.
 */
const MALFORMED: Array<[string, unknown, string]> = [
  ['unknown mode', { ...valid, mode: 'transfer' }, 'mode'],
  ['fineTuning on feature_extraction', { ...valid, fineTuning: { trainableFrom: 'layer4' } }, 'fineTuning'],
  ['negative learning rate', { ...valid, optimizer: { type: 'sgd', learningRate: -0.1 } }, 'optimizer.learningRate'],
  ['dataset path escaping DATA_DIR', { ...valid, dataset: { type: 'folder', path: '../../etc' } }, 'dataset.path'],
  ['dataset folder that does not exist', { ...valid, dataset: { type: 'folder', path: 'nope' } }, 'dataset.path'],
  ['dataset folder with one class', { ...valid, dataset: { type: 'folder', path: 'one-class' } }, 'dataset.path'],
  ['dataset folder symlinked outside DATA_DIR', { ...valid, dataset: { type: 'folder', path: 'escape' } }, 'dataset.path'],
  ['upload that does not exist', { ...valid, dataset: { type: 'upload', id: '3b241101-e2bb-4255-8caf-4136c566a962' } }, 'dataset.id'],
  ['a JSON array', [valid], '(root)'],
  ['null', null, '(root)'],
];

describe('job spec validation (4xx problem+json naming the field)', () => {
  let service: TestService;
  before(async () => {
    service = await startService('validation');
    mkdirSync(path.join(service.config.DATA_DIR, 'one-class', 'cats'), { recursive: true });
    symlinkSync('/etc', path.join(service.config.DATA_DIR, 'escape'));
  });
  after(() => service.stop());

  it('rejects malformed specs with 400 problem+json naming the failing field', async () => {
    for (const [description, body, field] of MALFORMED) {
      const response = await service.http().post('/v1/jobs').set('content-type', 'application/json').send(JSON.stringify(body));
      assert.equal(response.status, 400, `${description}: ${response.status} ${response.text}`);
      assert.match(response.headers['content-type'], /^application\/problem\+json/, description);
      assert.equal(response.body.status, 400);
      assert.ok(response.body.requestId, `${description}: problem carries the request id`);
      const paths = (response.body.errors as Array<{ path: string }>).map((e) => e.path);
      assert.ok(paths.includes(field), `${description}: expected ${field} among ${paths.join(', ')}`);
    }
    const queued = await service.http().get('/v1/jobs');
    assert.equal(queued.body.total, 0, 'nothing malformed was enqueued');
  });

  it('refuses a sweep with 400 naming the path: a field the mode lacks, min > max, a grid past the limit', async () => {
    const base = { ...valid, dataset: synthetic };
    const values = { values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] };
    const cases: Array<[object, string]> = [
      [
        { parameters: { 'fineTuning.trainableFrom': { values: ['layer4'] } }, search: { method: 'grid' } },
        'parameters.fineTuning.trainableFrom',
      ],
      [
        { parameters: { labelSmoothing: { distribution: 'uniform', min: 0.3, max: 0.1 } }, search: { method: 'random', trials: 2 } },
        'parameters.labelSmoothing.min',
      ],
      [{ parameters: { batchSize: values, seed: values }, search: { method: 'grid' } }, 'parameters'],
      [{ parameters: { batchSize: { values: [2] } }, search: { method: 'grid' }, parallelism: 100 }, 'parallelism'],
    ];
    for (const [sweep, field] of cases) {
      const response = await service
        .http()
        .post('/v1/sweeps')
        .send({ base, ...sweep });
      assert.equal(response.status, 400, `${field}: ${response.text}`);
      assert.match(response.headers['content-type'], /^application\/problem\+json/);
      const paths = (response.body.errors as Array<{ path: string }>).map((e) => e.path);
      assert.deepEqual(paths, [field], response.text);
    }
    assert.equal((await service.http().get('/v1/sweeps')).body.total, 0, 'no sweep was made');
  });

  it('refuses a webhook to a loopback, private or link-local address without WEBHOOK_ALLOW_PRIVATE (400 naming url)', async () => {
    for (const url of [
      'http://127.0.0.1:9/hook',
      'http://localhost/hook',
      'http://10.1.2.3/',
      'http://169.254.169.254/latest',
      'http://[::1]:8080/',
      'http://[::ffff:192.168.0.1]/',
    ]) {
      const response = await service
        .http()
        .post('/v1/webhooks')
        .send({ url, events: ['job.completed'] });
      assert.equal(response.status, 400, `${url}: ${response.text}`);
      assert.deepEqual(
        response.body.errors.map((e: { path: string }) => e.path),
        ['url'],
      );
    }
    const ftp = await service
      .http()
      .post('/v1/webhooks')
      .send({ url: 'ftp://example.com/', events: ['job.completed'] });
    assert.equal(ftp.status, 400);
    assert.equal((await service.http().get('/v1/webhooks')).body.items.length, 0);
  });

  it('answers non-JSON, wrong media types, oversized bodies and bad Idempotency-Keys with 4xx problems', async () => {
    const cases = [
      [service.http().post('/v1/jobs').set('content-type', 'application/json').send('{"mode": '), 400],
      [service.http().post('/v1/jobs').set('content-type', 'application/json').send(''), 400],
      [service.http().post('/v1/jobs').set('content-type', 'text/plain').send('mode=fine_tuning'), 415],
      [
        service
          .http()
          .post('/v1/jobs')
          .set('content-type', 'application/json')
          .send(JSON.stringify({ ...valid, pad: 'x'.repeat(2 * 1024 * 1024) })),
        413,
      ],
      [service.http().post('/v1/jobs').set('idempotency-key', 'has space').send(valid), 400],
    ] as const;
    for (const [request, status] of cases) {
      const response = await request;
      assert.equal(response.status, status, response.text);
      assert.match(response.headers['content-type'], /^application\/problem\+json/);
    }
    const form = await service.http().post('/v1/jobs').type('form').send({ mode: 'fine_tuning' });
    assert.equal(form.status, 415);
    assert.match(form.body.detail, /send the body as application\/json/, 'the 415 says what to send');
  });

  it('says a missing field is required, with its path', async () => {
    const response = await service.http().post('/v1/jobs').send({ mode: 'fine_tuning', weights: 'random', augmentation: {} });
    assert.equal(response.status, 400);
    assert.deepEqual(response.body.errors, [{ path: 'dataset', message: 'required' }]);
    const nested = await service
      .http()
      .post('/v1/jobs')
      .send({ mode: 'fine_tuning', weights: 'random', dataset: { type: 'folder' } });
    assert.deepEqual(nested.body.errors, [{ path: 'dataset.path', message: 'required' }]);
  });

  it('answers unknown ids, unknown routes and bad query parameters with 4xx problems', async () => {
    const id = '3b241101-e2bb-4255-8caf-4136c566a962';
    for (const [method, url, status] of [
      ['get', `/v1/jobs/${id}`, 404],
      ['get', '/v1/jobs/not-a-uuid', 404],
      ['get', `/v1/jobs/${id}/summary`, 404],
      ['get', `/v1/jobs/${id}/metrics`, 404],
      ['get', `/v1/jobs/${id}/checkpoint`, 404],
      ['delete', `/v1/jobs/${id}`, 404],
      ['get', '/v1/nothing', 404],
      ['get', '/v1/jobs?state=sleeping', 400],
      ['get', '/v1/jobs?limit=100000', 400],
      ['get', '/v1/jobs?color=blue', 400],
      ['get', `/v1/jobs/${id}/checkpoint?epoch=-1`, 400],
      ['get', `/v1/jobs/${id}/checkpoint?format=zip`, 400],
    ] as const) {
      const response = await service.http()[method](url);
      assert.equal(response.status, status, `${method} ${url}: ${response.text}`);
      assert.match(response.headers['content-type'], /^application\/problem\+json/, url);
    }
  });

  it('accepts a valid spec with 202, a Location and the defaults echoed back', async () => {
    const response = await service.http().post('/v1/jobs').send(valid);
    assert.equal(response.status, 202, response.text);
    assert.equal(response.headers.location, `/v1/jobs/${response.body.id}`);
    assert.equal(response.body.state, 'queued');
    assert.deepEqual(response.body.spec.optimizer, { type: 'adam', learningRate: 0.001, momentum: 0.9, weightDecay: 0 });
    assert.equal(response.body.spec.validationSplit, 0.2);
  });

  it('returns the same job for a retried POST with the same Idempotency-Key, and refuses a different body', async () => {
    const first = await service.http().post('/v1/jobs').set('idempotency-key', 'retry-1').send(valid);
    const again = await service.http().post('/v1/jobs').set('idempotency-key', 'retry-1').send(valid);
    assert.equal(first.status, 202);
    assert.equal(again.status, 200);
    assert.equal(again.body.id, first.body.id);
    const other = await service
      .http()
      .post('/v1/jobs')
      .set('idempotency-key', 'retry-1')
      .send({ ...valid, epochs: 2 });
    assert.equal(other.status, 422);
  });

  it('summarises a spec without training, as JSON or as the text table', async () => {
    const spec = { mode: 'fine_tuning', weights: 'random', inputSize: 224, dataset: { ...synthetic, numClasses: 5 } };
    const json = await service.http().post('/v1/summary?depth=2').send(spec);
    assert.equal(json.status, 200, json.text);
    assert.equal(json.body.totals.totalParams, 24_689_733);
    assert.equal(json.body.totals.nonTrainableParams, 53_120);
    assert.ok(json.body.rows.every((r: { depth: number }) => r.depth <= 2));
    const text = await service
      .http()
      .post('/v1/summary')
      .set('accept', 'text/plain')
      .send({ ...spec, mode: 'feature_extraction' });
    assert.equal(text.status, 200);
    assert.match(text.text, /Trainable params: 10,245/);
    const bad = await service.http().post('/v1/summary?depth=9').send(spec);
    assert.equal(bad.status, 400);
  });

  it('describes a job whose stored payload no longer parses instead of failing with a 500', async () => {
    const queues = new Queues(service.redis, { prefix: service.config.QUEUE_PREFIX, attempts: 1 });
    const id = '0b6a2a0e-4f8e-4d5e-9d7e-1a2b3c4d5e6f';
    await queues.enqueue(QueueName.Training, id, {
      spec: { mode: 'retired_mode' } as never,
      owner: 'local',
      artifactQuotaBytes: null,
      submittedAt: new Date().toISOString(),
    });
    const response = await service.http().get(`/v1/jobs/${id}`);
    assert.equal(response.status, 200, response.text);
    assert.equal(response.body.spec.mode, 'retired_mode');
    assert.equal(response.body.state, 'queued');
    await queues.close();
  });
});
