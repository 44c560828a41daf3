import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import sharp from 'sharp';
import { sseMessages, type SseMessage } from '../../common/sse.js';
import { seededRandom } from '../../common/random.js';
import { renderSyntheticImage } from '../../engine/data/synthetic.js';
import type { JobStatus } from '../../schemas/job-status.js';
import type { Metrics } from '../../schemas/metrics.js';
import type { WeightsVariant } from '../../schemas/weights.js';
import { completedJob, finished, pollJob, startService, type TestService } from '../helpers/service.js';
import { standInReference, tempDir, torchReference } from '../helpers/torch.js';
import { startWeightsServer, type WeightsServer } from '../helpers/weights-server.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const INPUT = 64;
const TIMEOUT_MS = 2000;

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('ImageNet weights fetched as pretrained=True fetches them, from a loopback server', () => {
  const scratch = tempDir('weights');
  let server: WeightsServer;
  let service: TestService;
  let pth: Buffer;
  let standIn: string;

  before(async () => {
    standIn = standInReference(['--seed', '6', '--sizes', String(INPUT), '--pth']);
    pth = readFileSync(path.join(standIn, 'weights.pth'));
    const tampered = Buffer.from(pth);
    tampered[tampered.length >> 1] ^= 0x01;
    server = await startWeightsServer({
      // Slow enough (about 4 s) for two workers to need it at once.
      '/models/resnet50-good.pth': { bytes: pth, behaviour: { kind: 'serve', bytesPerSecond: 25 * 1024 ** 2 } },
      '/models/resnet50-dropped.pth': { bytes: pth, behaviour: { kind: 'drop', after: pth.length >> 1 } },
      '/models/resnet50-tampered.pth': { bytes: tampered, behaviour: { kind: 'serve' } },
      '/models/resnet50-silent.pth': { bytes: pth, behaviour: { kind: 'silent' } },
    });
    const entry = (file: string) => ({ url: server.url(`/models/${file}`), bytes: pth.length, sha256: sha256(pth) });
    const manifest = {
      imagenet: entry('resnet50-good.pth'),
      dropped: entry('resnet50-dropped.pth'),
      tampered: entry('resnet50-tampered.pth'),
      silent: entry('resnet50-silent.pth'),
    };
    writeFileSync(path.join(scratch, 'manifest.json'), JSON.stringify(manifest));
    service = await startService('weights', {
      WEIGHTS_MANIFEST: path.join(scratch, 'manifest.json'),
      WEIGHTS_DOWNLOAD_TIMEOUT_MS: String(TIMEOUT_MS),
      WEIGHTS_DOWNLOAD_RETRIES: '1',
    });
    await Promise.all([service.startWorker(), service.startWorker()]);
    await service.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    await service.stop();
    await server.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  const submit = async (spec: object) => {
    const response = await service.http().post('/v1/jobs').send(spec);
    assert.equal(response.status, 202, response.text);
    return response.body as JobStatus;
  };
  const fullGets = (file: string) => server.requests.filter((r) => r.path === `/models/${file}` && !r.range).length;

  it('fetches the default weights once for two workers, shows the download live, and predicts as PyTorch does on that file', async () => {
    const variants = (await service.http().get('/v1/weights')).body.items as WeightsVariant[];
    assert.deepEqual(
      variants.find((v) => v.name === 'imagenet'),
      {
        name: 'imagenet',
        present: false,
        source: server.url('/models/resnet50-good.pth'),
        bytes: pth.length,
        sha256: sha256(pth),
        top1: null,
        transform: { resizeAt224: 256 },
      },
    );
    const [first, second] = await Promise.all([
      submit({ mode: 'pretrained', inputSize: INPUT }),
      submit({ mode: 'pretrained', inputSize: INPUT }),
    ]);
    const { port } = service.app.server.address() as AddressInfo;
    const events: SseMessage[] = [];
    const response = await fetch(`http://127.0.0.1:${port}/v1/jobs/${first.id}/events`);
    for await (const message of sseMessages(response.body!)) events.push(message);
    const statuses = [await pollJob(service, first.id, finished), await pollJob(service, second.id, finished)];
    assert.deepEqual(
      statuses.map((s) => s.state),
      ['completed', 'completed'],
      JSON.stringify(statuses.map((s) => s.failure)),
    );
    assert.equal(fullGets('resnet50-good.pth'), 1, 'one download for both workers');
    const downloads = events
      .filter((e) => e.event === 'progress' && (e.data as JobStatus['progress']).phase === 'downloading_weights')
      .map((e) => (e.data as JobStatus['progress']).download);
    assert.ok(downloads.length > 0, 'the stream showed the download');
    for (const download of downloads)
      assert.ok(download && download.variant === 'imagenet' && (download.waiting || download.totalBytes === pth.length));

    const present = ((await service.http().get('/v1/weights')).body.items as WeightsVariant[]).find((v) => v.name === 'imagenet');
    assert.equal(present?.present, true);
    const summary = (await service.http().get(`/v1/jobs/${first.id}/summary`)).body as { weights: unknown };
    assert.deepEqual(summary.weights, {
      source: 'variant',
      name: 'imagenet',
      sha256: present?.sha256,
      from: server.url('/models/resnet50-good.pth'),
    });

    // At the size the transform resizes to (round(64 x 256 / 224) = 73): both sides then crop the same pixels.
    const photo = path.join(scratch, 'photo.png');
    await sharp(renderSyntheticImage(2, 4, 73, seededRandom(3)), { raw: { width: 73, height: 73, channels: 3 } })
      .png()
      .toFile(photo);
    const reference = path.join(scratch, 'torch-top5.json');
    torchReference([
      'predict',
      '--weights',
      path.join(standIn, 'weights.pth'),
      '--image',
      photo,
      '--size',
      String(INPUT),
      '--out',
      reference,
    ]);
    const torch = JSON.parse(readFileSync(reference, 'utf8')) as { indices: number[]; probabilities: number[] };
    const predicted = await service.http().post(`/v1/jobs/${first.id}/predict?precision=fp32`).attach('image', photo);
    assert.equal(predicted.status, 200, predicted.text);
    const [top] = predicted.body.predictions as Array<{ top: Array<{ index: number; probability: number }> }>;
    assert.deepEqual(
      top.top.map((t) => t.index),
      torch.indices,
    );
    top.top.forEach((t, i) =>
      assert.ok(Math.abs(t.probability - torch.probabilities[i]) < 1e-4, `${t.probability} vs ${torch.probabilities[i]}`),
    );
  });

  it('resumes a download the server broke off, from where it broke off', async () => {
    const status = await pollJob(service, (await submit({ mode: 'pretrained', inputSize: INPUT, weights: 'dropped' })).id, finished);
    assert.equal(status.state, 'completed', JSON.stringify(status.failure));
    const asked = server.requests.filter((r) => r.path === '/models/resnet50-dropped.pth').map((r) => r.range);
    assert.equal(asked.length, 2);
    assert.equal(asked[0], undefined);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(asked[1] ?? '')?.[1]);
    assert.ok(resumedAt > 0 && resumedAt <= pth.length >> 1, `the second request asked for the rest, from what had arrived: ${asked[1]}`);
  });

  it('refuses a file with one byte changed, deletes it, and fails the job naming the hash', async () => {
    const status = await pollJob(service, (await submit({ mode: 'pretrained', inputSize: INPUT, weights: 'tampered' })).id, finished);
    assert.equal(status.state, 'failed');
    assert.equal(status.attempts, 1);
    const reason = status.failure?.reason ?? '';
    assert.ok(reason.includes(`the file from ${server.url('/models/resnet50-tampered.pth')} was refused and deleted`), reason);
    assert.ok(reason.includes(`sha256 ${sha256(pth)}`), 'the hash it should have');
    const downloads = path.join(service.config.DATA_DIR, '.weights-downloads');
    assert.deepEqual(existsSync(downloads) ? readdirSync(downloads).filter((f) => f.startsWith('tampered')) : [], []);
    const tampered = ((await service.http().get('/v1/weights')).body.items as WeightsVariant[]).find((v) => v.name === 'tampered');
    assert.equal(tampered?.present, false, 'nothing was stored');
  });

  it('fails a job whose server never answers once every attempt has timed out (the documented bound)', async () => {
    const status = await pollJob(service, (await submit({ mode: 'pretrained', inputSize: INPUT, weights: 'silent' })).id, finished);
    assert.equal(status.state, 'failed');
    assert.match(
      status.failure?.reason ?? '',
      /could not fetch the "silent" weights from http:\/\/127\.0\.0\.1:\d+\/models\/resnet50-silent\.pth: .*Timeout.*\(after 2 attempts\)/,
    );
    assert.equal(server.requests.filter((r) => r.path === '/models/resnet50-silent.pth').length, 2);
  });

  it('starts a job from an earlier job: its best checkpoint carries on (same data and classes), lineage recorded', async () => {
    const dataset = { type: 'synthetic', numClasses: 3, imagesPerClass: 12, imageSize: 32, seed: 8 };
    const base = {
      mode: 'fine_tuning',
      weights: 'random',
      inputSize: 32,
      batchSize: 6,
      dataset,
      augmentation: { randomResizedCrop: false, horizontalFlip: false },
      fineTuning: { trainableFrom: 'layer4', freezeBatchNorm: true },
    };
    const earlier = await completedJob(service, { ...base, epochs: 3 });
    const best = earlier.metrics.epochs.find((e) => e.epoch === earlier.metrics.bestEpoch)!;
    const later = await completedJob(service, {
      ...base,
      epochs: 1,
      weights: { job: earlier.id, checkpoint: 'best' },
      optimizer: { type: 'sgd', learningRate: 1e-9, momentum: 0 },
    });
    assert.equal(
      later.metrics.epochs[0].validationAccuracy,
      best.validationAccuracy,
      "its first epoch validates as the earlier job's best did",
    );
    assert.deepEqual(later.metrics.weights, { source: 'job', job: earlier.id, checkpoint: `epoch-${best.epoch}`, head: 'kept' });
    const features = await completedJob(service, {
      mode: 'feature_extraction',
      weights: { job: earlier.id, checkpoint: 'final' },
      inputSize: 32,
      epochs: 1,
      dataset: { ...dataset, numClasses: 2 },
    });
    assert.deepEqual(
      features.metrics.weights,
      { source: 'job', job: earlier.id, checkpoint: 'final', head: 'new' },
      'other classes: a new head',
    );
  });

  it('imports a torchvision state_dict saved with module. prefixes, and a safetensors, and reports a file that does not fit', () => {
    const env = { ...process.env, ...service.env };
    const retrain = (...args: string[]) =>
      spawnSync(process.execPath, [path.join(ROOT, 'bin/retrain.mjs'), 'weights', ...args], { encoding: 'utf8', env });
    torchReference(['pth', '--out', scratch, '--seed', '2', '--marker', path.join(scratch, 'ran')]);
    const prefixed = retrain('import', path.join(scratch, 'module-prefixed.pth'), '--as', 'ours');
    assert.equal(prefixed.status, 0, prefixed.stderr);
    assert.equal(JSON.parse(prefixed.stdout).source, 'imported from module-prefixed.pth');
    const safetensors = retrain('import', path.join(standIn, 'weights.safetensors'), '--as', 'ours-too', '--resize-at-224', '232');
    assert.equal(safetensors.status, 0, safetensors.stderr);
    assert.deepEqual(JSON.parse(safetensors.stdout).transform, { resizeAt224: 232 });
    const mismatched = retrain('import', path.join(scratch, 'views.pth'), '--as', 'wrong');
    assert.equal(mismatched.status, 1);
    assert.match(
      mismatched.stderr,
      /weights do not match torchvision's resnet50 .*missing \d+: conv1\.weight.*unexpected 4: transposed, offset, half, count/,
    );
    const hostile = retrain('import', path.join(scratch, 'hostile.pth'), '--as', 'hostile');
    assert.equal(hostile.status, 1);
    assert.match(hostile.stderr, /names the global posix\.system/);
    const listed = retrain('list')
      .stdout.trim()
      .split('\n')
      .map((line) => JSON.parse(line) as WeightsVariant);
    assert.deepEqual(
      listed.filter((v) => v.present).map((v) => v.name),
      ['dropped', 'imagenet', 'ours', 'ours-too'],
    );
  });

  it('refuses a job naming weights nobody stored or listed, naming the known ones', async () => {
    const response = await service.http().post('/v1/jobs').send({ mode: 'pretrained', inputSize: INPUT, weights: 'resnet101' });
    assert.equal(response.status, 400);
    assert.match(response.body.detail, /no weights named "resnet101"; known: random, dropped, imagenet, /);
  });

  it('uses a variant at its own preprocessing: imagenet_v2-style weights resize at 232 of 224', async () => {
    const job = await completedJob(service, { mode: 'pretrained', inputSize: 224, weights: 'ours-too' });
    const metadata = JSON.parse(
      readFileSync(path.join(service.config.ARTIFACTS_DIR, 'jobs', job.id, 'final', 'metadata.json'), 'utf8'),
    ) as {
      preprocessing: { resize: number; crop: number };
    };
    assert.deepEqual([metadata.preprocessing.resize, metadata.preprocessing.crop], [232, 224]);
    const metrics = (await service.http().get(`/v1/jobs/${job.id}/metrics`)).body as Metrics;
    assert.equal((metrics.weights as { name: string }).name, 'ours-too');
  });
});
