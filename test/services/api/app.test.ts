import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { rmSync } from 'node:fs';
import { Problem } from '../../../schemas/problem.js';
import { testApp } from '../../helpers/app.js';
import { sleep } from '../../helpers/service.js';
import { tempDir } from '../../helpers/torch.js';
import { freePort } from '../../helpers/ports.js';

const scratch = tempDir('app');
after(() => rmSync(scratch, { recursive: true, force: true }));

async function app(env: Record<string, string> = {}) {
  const { app: instance, redis, close } = await testApp('app', scratch, env);
  return { app: instance, redis, close };
}

function assertProblem(response: { statusCode: number; headers: Record<string, unknown>; json(): unknown }, status: number) {
  assert.equal(response.statusCode, status);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  const problem = Problem.parse(response.json());
  assert.equal(problem.status, status);
  return problem;
}

describe('the API app', () => {
  it('answers 503 with Retry-After on every Redis-backed route while Redis is unreachable', async () => {
    const { app: api, close } = await app({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
    try {
      for (const url of ['/v1/jobs', '/v1/jobs/3b241101-e2bb-4255-8caf-4136c566a962', '/readyz']) {
        const response = await api.inject({ method: 'GET', url });
        assertProblem(response, 503);
        assert.equal(response.headers['retry-after'], '10', url);
      }
      assert.equal((await api.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'liveness needs no Redis');
      const ready = assertProblem(await api.inject({ method: 'GET', url: '/readyz' }), 503);
      assert.equal(ready.detail, 'redis did not answer', "the client's error text (hosts, ports) stays in the log");
    } finally {
      await close();
    }
  });

  it('gives a request long enough for the largest upload at the slowest rate it serves', async () => {
    const { app: api, close } = await app({ UPLOAD_LIMIT_BYTES: String(600 * 1024 ** 2), UPLOAD_MIN_BYTES_PER_SECOND: String(1024 ** 2) });
    try {
      assert.equal(api.server.requestTimeout, 600_000, '600 MiB at 1 MiB/s');
    } finally {
      await close();
    }
    const small = await app({ UPLOAD_LIMIT_BYTES: String(1024 ** 2) });
    try {
      assert.equal(small.app.server.requestTimeout, 120_000, 'never under two minutes');
    } finally {
      await small.close();
    }
  });

  it('receives at most UPLOAD_MAX_CONCURRENT uploads at once, answering 503 with Retry-After past it', async () => {
    const { app: api, close } = await app({ UPLOAD_MAX_CONCURRENT: '1' });
    try {
      const arriving = new PassThrough();
      arriving.write(Buffer.alloc(1024));
      const first = api.inject({ method: 'POST', url: '/v1/datasets', headers: { 'content-type': 'application/gzip' }, payload: arriving });
      // The first upload is being received (its first bytes read, its body not ended) while the second arrives.
      for (let i = 0; i < 500 && arriving.readableLength > 0; i++) await sleep(10);
      assert.equal(arriving.readableLength, 0, 'the first upload is being read');
      const second = await api.inject({
        method: 'POST',
        url: '/v1/datasets',
        headers: { 'content-type': 'application/gzip' },
        payload: 'x',
      });
      const problem = assertProblem(second, 503);
      assert.match(problem.detail ?? '', /1 uploads being received in use, its most/);
      assert.equal(second.headers['retry-after'], '10');
      arriving.end();
      assertProblem(await first, 400);
      const third = await api.inject({
        method: 'POST',
        url: '/v1/datasets',
        headers: { 'content-type': 'application/gzip' },
        payload: 'x',
      });
      assert.equal(third.statusCode, 400, 'the slot is free again once the first ended: this one is refused for its content');
    } finally {
      await close();
    }
  });

  it('is ready only while the artifact store answers too', async () => {
    const { app: api, close } = await app();
    try {
      // Not ready until its Redis connection is up: polled, as an orchestrator would.
      let ready = await api.inject({ method: 'GET', url: '/readyz' });
      for (let attempt = 0; ready.statusCode !== 200 && attempt < 50; attempt++) {
        await sleep(100);
        ready = await api.inject({ method: 'GET', url: '/readyz' });
      }
      assert.equal(ready.statusCode, 200, ready.body);
      assert.equal(ready.json<{ artifactStore: string }>().artifactStore, 'ok');
    } finally {
      await close();
    }
    const unreachable = await app({
      ARTIFACT_STORE: 's3://nowhere/prefix',
      S3_ENDPOINT: `http://127.0.0.1:${await freePort()}`,
      AWS_ACCESS_KEY_ID: 'key',
      AWS_SECRET_ACCESS_KEY: 'secret',
    });
    try {
      const problem = assertProblem(await unreachable.app.inject({ method: 'GET', url: '/readyz' }), 503);
      assert.equal(problem.detail, 'the artifact store did not answer');
    } finally {
      await unreachable.close();
    }
  });

  it('answers 503, not 404, for predictions on an existing job once Redis goes away', async () => {
    const { app: api, redis, close } = await app();
    try {
      const submitted = await api.inject({
        method: 'POST',
        url: '/v1/jobs',
        payload: { mode: 'pretrained', weights: 'random', inputSize: 32 },
      });
      assert.equal(submitted.statusCode, 202);
      const { id } = submitted.json<{ id: string }>();
      assertProblem(await api.inject({ method: 'POST', url: `/v1/jobs/${id}/predict` }), 409);
      redis.disconnect();
      const problem = assertProblem(await api.inject({ method: 'POST', url: `/v1/jobs/${id}/predict` }), 503);
      assert.match(problem.detail, /Redis/);
    } finally {
      await close();
    }
  });

  it('answers 503 with Retry-After under memory pressure, while liveness stays 200', async () => {
    const { app: api, close } = await app({ API_MAX_HEAP_USED_BYTES: String(1024 * 1024) });
    try {
      // under-pressure samples the heap once a second: wait for its first sample.
      while (!(api as unknown as { isUnderPressure(): boolean }).isUnderPressure()) await sleep(50);
      const response = await api.inject({ method: 'GET', url: '/v1/jobs' });
      assertProblem(response, 503);
      assert.equal(response.headers['retry-after'], '10');
      assert.equal((await api.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    } finally {
      await close();
    }
  });

  it('names where invalid input was and which fields, and echoes the request id', async () => {
    const { app: api, close } = await app();
    try {
      const query = assertProblem(
        await api.inject({ method: 'GET', url: '/v1/jobs?limit=0&colour=red', headers: { 'x-request-id': 'req-42' } }),
        400,
      );
      assert.deepEqual([query.in, query.errors?.map((e) => e.path).sort(), query.requestId], ['query', ['colour', 'limit'], 'req-42']);
      const header = assertProblem(
        await api.inject({ method: 'POST', url: '/v1/jobs', headers: { 'idempotency-key': 'has space' }, payload: { mode: 'pretrained' } }),
        400,
      );
      assert.deepEqual([header.in, header.errors?.[0].path], ['headers', 'idempotency-key']);
      assert.equal(query.type, '/problems/invalid-request', 'a type of its own');
      const described = await api.inject({ method: 'GET', url: query.type });
      assert.equal(described.statusCode, 200);
      assert.match(described.json<{ description: string }>().description, /`errors` names each, by path/);
      assert.equal(assertProblem(await api.inject({ method: 'GET', url: '/v1/nothing' }), 404).type, '/problems/not-found');
      assertProblem(await api.inject({ method: 'GET', url: '/problems/nonsense' }), 404);
      assertProblem(await api.inject({ method: 'GET', url: '/v1/datasets/3b241101-e2bb-4255-8caf-4136c566a962' }), 404);
    } finally {
      await close();
    }
  });
});
