import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { finished, pollJob, startService, type TestService } from '../helpers/service.js';

interface Operation {
  requestBody?: { content: Record<string, { schema: Record<string, unknown> }> };
  responses: Record<string, { content?: Record<string, { schema: Record<string, unknown> }> }>;
}
type OpenApi = { paths: Record<string, Record<string, Operation>> };

describe('the OpenAPI document and Swagger UI', () => {
  let service: TestService;
  let doc: OpenApi;
  before(async () => {
    service = await startService('openapi');
    await service.startWorker();
    const response = await service.http().get('/openapi.json');
    assert.equal(response.status, 200);
    doc = response.body as OpenApi;
  });
  after(() => service.stop());

  it('is a valid OpenAPI 3.1 document with every route and the problem+json answers', async () => {
    const result = await new Validator().validate(doc);
    assert.ok(result.valid, JSON.stringify(result.errors));
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`),
    );
    for (const expected of [
      'POST /v1/jobs',
      'GET /v1/jobs',
      'GET /v1/jobs/{id}',
      'DELETE /v1/jobs/{id}',
      'GET /v1/jobs/{id}/summary',
      'GET /v1/jobs/{id}/metrics',
      'GET /v1/jobs/{id}/preflight',
      'GET /v1/jobs/{id}/checkpoint',
      'GET /v1/jobs/{id}/events',
      'POST /v1/jobs/{id}/predict',
      'POST /v1/datasets',
      'GET /v1/datasets',
      'GET /v1/datasets/{id}',
      'DELETE /v1/datasets/{id}',
      'POST /v1/datasets/preflight',
      'POST /v1/summary',
      'GET /healthz',
      'GET /readyz',
      'GET /metrics',
    ])
      assert.ok(operations.includes(expected), `${expected} is documented`);
    for (const [path, methods] of Object.entries(doc.paths))
      for (const [method, operation] of Object.entries(methods))
        assert.ok(
          operation.responses['4XX']?.content?.['application/problem+json'],
          `${method} ${path} documents its problem+json answers`,
        );
    const spec = doc.paths['/v1/jobs'].post.requestBody!.content['application/json'].schema as {
      oneOf: Array<{ properties: Record<string, { enum?: string[]; default?: unknown }> }>;
    };
    assert.deepEqual(
      spec.oneOf.map((variant) => variant.properties.mode.enum),
      [['pretrained'], ['feature_extraction'], ['fine_tuning']],
      'one variant per transfer mode',
    );
    assert.equal(spec.oneOf[2].properties.batchSize.default, 16, 'defaults are documented');
  });

  it('documents what the service answers: real responses of the journey validate against their schemas', async () => {
    const ajv = new Ajv2020({ strict: false, validateFormats: false });
    const check = (path: string, method: string, status: number, body: unknown) => {
      const schema = doc.paths[path][method].responses[String(status)]?.content?.['application/json']?.schema;
      assert.ok(schema, `${method} ${path} ${status} has a schema`);
      assert.ok(ajv.validate(schema, body), `${method} ${path} ${status}: ${ajv.errorsText()}`);
    };
    const submitted = await service.http().post('/v1/jobs').send({ mode: 'pretrained', weights: 'random', inputSize: 32 });
    check('/v1/jobs', 'post', 202, submitted.body);
    await pollJob(service, submitted.body.id, finished, 120_000);
    const id = submitted.body.id as string;
    check('/v1/jobs/{id}', 'get', 200, (await service.http().get(`/v1/jobs/${id}`)).body);
    check('/v1/jobs', 'get', 200, (await service.http().get('/v1/jobs')).body);
    check('/v1/jobs/{id}/metrics', 'get', 200, (await service.http().get(`/v1/jobs/${id}/metrics`)).body);
    check('/readyz', 'get', 200, (await service.http().get('/readyz')).body);
    const bad = await service.http().post('/v1/jobs').send({ mode: 'pretrained', inputSize: 100 });
    assert.equal(bad.status, 400);
    const problem = doc.paths['/v1/jobs'].post.responses['4XX'].content!['application/problem+json'].schema;
    assert.ok(ajv.validate(problem, bad.body), ajv.errorsText());
  });

  it('serves Swagger UI and its assets itself', async () => {
    const page = await service.http().get('/docs/');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /text\/html/);
    const style = await service.http().get('/docs/static/swagger-ui.css');
    assert.equal(style.status, 200);
    assert.ok(style.text.length > 10_000);
  });
});
