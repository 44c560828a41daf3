import { after, before, describe, it } from 'node:test';
import type { InjectOptions } from 'fastify';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { whenReady } from '../../common/redis-connection.js';
import { seededRandom } from '../../common/random.js';
import sharp from 'sharp';
import { deepPaths, deepTarGz, zipOf } from '../helpers/hostile-archives.js';
import { finished, pollJob, startService, type TestService } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';

/** Requests per run: enough to reach every route with every kind of damage, few enough to stay quick. */
const REQUESTS = 2500;
const SEED = 20261128;

const VALID_SPECS = [
  { mode: 'pretrained', weights: 'random', inputSize: 32 },
  { mode: 'feature_extraction', weights: 'random', inputSize: 32, epochs: 1, dataset: { type: 'synthetic', numClasses: 2 } },
  {
    mode: 'fine_tuning',
    weights: 'random',
    epochs: 2,
    optimizer: { type: 'sgd', learningRate: 0.01 },
    schedule: { type: 'step', stepSize: 1 },
    earlyStopping: { patience: 2 },
    fineTuning: { trainableFrom: 'layer4', freezeBatchNorm: false },
    dataset: { type: 'folder', path: 'pets' },
  },
];
const HOSTILE: unknown[] = [
  null,
  -1,
  0,
  1e308,
  -1e308,
  2 ** 53 + 1,
  0.5,
  '',
  'x'.repeat(5000),
  '../../etc/passwd',
  '\u0000',
  '\ud800',
  [],
  [1, 2, 3],
  {},
  { __proto__: { admin: true } },
  true,
  'NaN',
  'Infinity',
  '1e999',
];
const BAD_IDS = ['x', '..%2F..%2Fetc', '%00', 'a'.repeat(3000), '3b241101-e2bb-4255-8caf-4136c566a96Z', '%E2%80%AE', 'wait', '*'];
const QUERIES = [
  'depth=-1',
  'depth=9',
  'depth=1e9',
  'epoch=../../x',
  'epoch=0',
  'epoch=Infinity',
  'format=../x',
  'topK=0',
  'topK=1e9',
  'limit=0',
  'limit=1e9',
  'offset=-1',
  'state=bogus',
  'purge=yes',
  '__proto__[x]=1',
  'limit=1&limit=2',
  'x='.padEnd(3000, 'y'),
];

type Random = () => number;
const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)];

/** A valid spec with one to three of: a key removed, a value replaced by a hostile one, an unknown key added. */
function mutated(random: Random, base: Record<string, unknown>): Record<string, unknown> {
  const spec: Record<string, unknown> = structuredClone(base);
  for (let i = 0, n = 1 + Math.floor(random() * 3); i < n; i++) {
    const target =
      random() < 0.3 && spec.dataset && typeof spec.dataset === 'object' && !Array.isArray(spec.dataset)
        ? (spec.dataset as Record<string, unknown>)
        : spec;
    const keys = Object.keys(target);
    const action = random();
    if (action < 0.3 && keys.length) delete target[pick(random, keys)];
    else if (action < 0.85 && keys.length) target[pick(random, keys)] = pick(random, HOSTILE);
    else target[pick(random, ['extra', 'constructor', 'prototype', 'mode2'])] = pick(random, HOSTILE);
  }
  return spec;
}

function rawJson(random: Random): string {
  const text = JSON.stringify(mutated(random, pick(random, VALID_SPECS)));
  return pick(random, [
    text.slice(0, Math.floor(random() * text.length)),
    `{"__proto__": {"admin": true}, ${text.slice(1)}`,
    `{"constructor": {"prototype": {"x": 1}}, ${text.slice(1)}`,
    text.replace('{', '{"mode": "pretrained", '),
    '['.repeat(5000),
    `\ufeff${text}`,
    text.replace(/"/g, "'"),
  ]);
}

/** A multipart body of one file part, boundary `b`. */
const multipartOf = (file: Buffer) =>
  Buffer.concat([
    Buffer.from('--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'),
    file,
    Buffer.from('\r\n--b--\r\n'),
  ]);

describe('a seeded fuzz over every route', () => {
  let service: TestService;
  let scratch: string;
  /** A job that completed, so predict reaches its model: trained by a worker that stops before the fuzz. */
  let completedId: string;
  let png: Buffer;
  /** The security review's archives (deep paths, folders implied past UPLOAD_MAX_FILES), and variations. */
  let hostileArchives: Array<{ type: string; body: Buffer }>;
  const statuses = new Map<string, number>();
  before(async () => {
    service = await startService('fuzz', {
      QUEUE_MAX_WAITING: '100000',
      UPLOAD_LIMIT_BYTES: String(1024 * 1024),
      UPLOAD_MAX_FILES: '300',
      UPLOAD_MIN_BYTES_PER_SECOND: '1024',
      UPLOAD_RATE_WINDOW_MS: '500',
    });
    scratch = path.dirname(service.config.DATA_DIR);
    const zip = (paths: string[]) => {
      const dir = tempDir('fuzz-zip');
      try {
        zipOf(path.join(dir, 'hostile.zip'), paths);
        return { type: 'application/zip', body: readFileSync(path.join(dir, 'hostile.zip')) };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    };
    hostileArchives = [
      { type: 'application/gzip', body: deepTarGz(250, 1000) },
      { type: 'application/gzip', body: deepTarGz(10, 9) },
      zip(deepPaths(100, 1000)),
      zip(Array.from({ length: 60 }, (_, n) => `c${n}/a/b/c/d/e/x.png`)),
    ];
    await whenReady(service.redis, 5000);
    const worker = await service.startWorker();
    const submitted = await service.app.inject({ method: 'POST', url: '/v1/jobs', payload: VALID_SPECS[0] });
    completedId = submitted.json().id as string;
    assert.equal((await pollJob(service, completedId, finished, 120_000)).state, 'completed');
    await worker.kill();
    const noise = { type: 'gaussian' as const, mean: 128, sigma: 30 };
    png = await sharp({ create: { width: 40, height: 40, channels: 3, background: '#000', noise } })
      .png()
      .toBuffer();
  });
  after(() => service.stop());

  it(`answers ${REQUESTS} damaged requests without a 5xx, and writes nothing outside its folders`, async () => {
    const random = seededRandom(SEED);
    const api = service;
    const jobId = (await api.app.inject({ method: 'POST', url: '/v1/jobs', payload: VALID_SPECS[0] })).json().id as string;
    const requests: Array<() => InjectOptions & { method: string; url: string }> = [
      () => ({ method: 'POST', url: '/v1/jobs', payload: mutated(random, pick(random, VALID_SPECS)) }),
      () => ({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': 'application/json' }, payload: rawJson(random) }),
      () => ({
        method: 'POST',
        url: '/v1/jobs',
        headers: { 'content-type': pick(random, ['text/plain', 'application/xml', 'multipart/form-data', 'application/gzip', '']) },
        payload: rawJson(random),
      }),
      () => ({
        method: 'POST',
        url: '/v1/jobs',
        headers: { 'idempotency-key': pick(random, ['', ' ', 'k'.repeat(300), '\u00e9', 'a b']) },
        payload: pick(random, VALID_SPECS),
      }),
      () => ({ method: pick(random, ['GET', 'DELETE'] as const), url: `/v1/jobs/${pick(random, BAD_IDS)}` }),
      () => ({
        method: 'GET',
        url: `/v1/jobs/${pick(random, [jobId, ...BAD_IDS])}/${pick(random, ['summary', 'metrics', 'preflight', 'checkpoint'])}?${pick(random, QUERIES)}`,
      }),
      () => ({ method: 'GET', url: `/v1/jobs?${pick(random, QUERIES)}` }),
      () => ({ method: 'DELETE', url: `/v1/jobs/${jobId}?${pick(random, QUERIES)}` }),
      () => ({
        method: 'POST',
        url: `/v1/jobs/${pick(random, [completedId, jobId, ...BAD_IDS])}/predict?${pick(random, QUERIES)}`,
        headers: { 'content-type': pick(random, ['multipart/form-data', 'multipart/form-data; boundary=b', 'image/png']) },
        payload: pick(random, ['', '--b\r\n', '--b\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\n\r\nxx', '--b--']),
      }),
      // The completed model, asked well but for one part: the image, the body's end or topK.
      () => ({
        method: 'POST',
        url: `/v1/jobs/${completedId}/predict?topK=${pick(random, ['1', '3', '0', '-1', '1e9', 'x', ''])}`,
        headers: { 'content-type': 'multipart/form-data; boundary=b' },
        payload: pick(random, [
          multipartOf(png),
          multipartOf(png.subarray(0, png.length >> 1)),
          multipartOf(Buffer.from('not an image')),
          multipartOf(png).subarray(0, 150),
        ]),
      }),
      () => ({
        method: 'POST',
        url: `/v1/datasets?${pick(random, ['', 'name=', `name=${'n'.repeat(300)}`, 'other=1'])}`,
        headers: { 'content-type': pick(random, ['application/gzip', 'application/zip', 'application/x-tar+gzip', 'application/json']) },
        payload: pick(random, [
          Buffer.alloc(0),
          gzipSync(Buffer.from(rawJson(random))),
          Buffer.from('PK\u0003\u0004junk'),
          gzipSync(Buffer.alloc(10_000)),
        ]),
      }),
      () => ({ method: pick(random, ['GET', 'DELETE'] as const), url: `/v1/datasets/${pick(random, BAD_IDS)}` }),
      () => ({
        method: 'POST',
        url: '/v1/datasets/preflight',
        payload: {
          dataset: pick(random, [
            { type: 'folder', path: pick(random, ['..', '/etc', 'uploads', '.synthetic', 'a/../../b', 'missing', '']) },
            { type: 'upload', id: pick(random, BAD_IDS) },
            { type: 'synthetic', numClasses: pick(random, HOSTILE) },
            pick(random, HOSTILE),
          ]),
          ...(random() < 0.3 ? { validationSplit: pick(random, HOSTILE) } : {}),
        },
      }),
      () => ({
        method: 'POST',
        url: `/v1/summary?${pick(random, QUERIES)}`,
        payload: { ...mutated(random, VALID_SPECS[0]), mode: pick(random, ['bogus', null, 1]) },
      }),
      () => ({
        method: pick(random, ['PUT', 'PATCH', 'OPTIONS'] as const),
        url: pick(random, ['/v1/jobs', `/v1/jobs/${jobId}`, '/v1/datasets']),
      }),
    ];
    const failures: string[] = [];
    // The hostile archives are fixed bytes, each sent once (~0.3 s each: again and again they tested nothing new).
    const whole = hostileArchives.map(({ type, body }) => () => ({
      method: 'POST' as const,
      url: '/v1/datasets?name=hostile',
      headers: { 'content-type': type },
      payload: body,
    }));
    for (let i = 0; i < REQUESTS; i++) {
      const request = (i < whole.length ? whole[i] : pick(random, requests))();
      const response = await api.app.inject(request);
      const key = `${request.method} ${String(request.url)
        .split('?')[0]
        .replace(/\/v1\/(jobs|datasets)\/[^/]+/, '/v1/$1/:id')} ${response.statusCode}`;
      statuses.set(key, (statuses.get(key) ?? 0) + 1);
      if (response.statusCode >= 500)
        failures.push(`${request.method} ${String(request.url).slice(0, 200)} -> ${response.statusCode} ${response.body.slice(0, 300)}`);
      else if (response.statusCode >= 400) assert.match(String(response.headers['content-type']), /^application\/problem\+json/, key);
    }
    assert.deepEqual(failures, [], `${failures.length} responses were 5xx`);
    const outside = readdirSync(scratch).filter((name) => !['data', 'artifacts'].includes(name));
    assert.deepEqual(outside, [], 'nothing written beside the data and artifact folders');
    assert.deepEqual(readdirSync(path.join(scratch, 'data', 'uploads', '.incoming')), [], 'no upload left half-received');
    assert.ok([...statuses.keys()].some((key) => key.endsWith(' 400')) && [...statuses.keys()].some((key) => key.endsWith(' 404')));
    assert.ok(statuses.get('POST /v1/jobs/:id/predict 200'), JSON.stringify(Object.fromEntries(statuses)));
  });

  it("cuts off the review's slow-upload pattern (bodies that trickle in), each answered 408, and keeps nothing of them", async () => {
    await service.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = service.app.server.address() as AddressInfo;
    const trickle = () =>
      new Promise<string>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.write('POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/gzip\r\nContent-Length: 1000000\r\n\r\n');
        const timer = setInterval(() => socket.write(Buffer.alloc(64)), 100);
        let answer = '';
        socket.on('data', (chunk: Buffer) => (answer += chunk.toString())).on('error', () => undefined);
        socket.on('close', () => {
          clearInterval(timer);
          resolve(answer);
        });
      });
    const answers = await Promise.all([trickle(), trickle(), trickle(), trickle()]);
    for (const answer of answers) assert.match(answer, /^HTTP\/1\.1 408 /, answer.slice(0, 200));
    assert.deepEqual(readdirSync(path.join(scratch, 'data', 'uploads', '.incoming')), []);
  });
});
