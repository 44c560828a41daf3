import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as tar from 'tar';
import * as tf from '../../engine/tf.js';
import { DatasetSpec } from '../../schemas/dataset.js';
import type { JobStatus } from '../../schemas/job-status.js';
import type { Metrics } from '../../schemas/metrics.js';
import { LocalArtifactStore } from '../../common/artifact-store.js';
import { resolveDataset, ImageLoader } from '../../engine/data/datasets.js';
import { preprocessingFor } from '../../engine/data/preprocess.js';
import { loadModel } from '../../engine/model/checkpoint-io.js';
import { buildResNet50 } from '../../engine/model/resnet50.js';
import { importTorchvisionWeights } from '../../engine/model/torchvision-weights.js';
import { binary, finished, pollJob, startServiceWithStandInWeights, type TestService, downloadWhenMade } from '../helpers/service.js';
import { maxAbsDifference, useTestBackend } from '../helpers/tf.js';
import sharp, { type Sharp } from 'sharp';
import { renderSyntheticImage } from '../../engine/data/synthetic.js';
import { MESSY_BAD_FILES, writeMessyDataset } from '../helpers/images.js';
import { seededRandom } from '../../common/random.js';
import { topIndices } from '../../engine/training/classification-report.js';
import { float32ValuesOf } from '../../engine/model/tensor-values.js';

const INPUT = 32;
// Six classes, so top-5 accuracy can differ from 1.
const CLASSES = 6;
const dataset = { type: 'synthetic', numClasses: CLASSES, imagesPerClass: 10, imageSize: 48, seed: 3 } as const;

/** The downloaded model's class probabilities for the images the worker recorded predictions for. */
async function probabilitiesOf(model: tf.LayersModel, service: TestService, metrics: Metrics) {
  const folder = await resolveDataset(DatasetSpec.parse(dataset), service.config.DATA_DIR);
  const loader = new ImageLoader(folder.root, preprocessingFor(INPUT));
  const x = await loader.batch(metrics.validationPredictions.map((p) => ({ file: p.file, label: p.label })));
  const probabilities = float32ValuesOf(() => tf.softmax(model.predict(x) as tf.Tensor));
  x.dispose();
  return probabilities;
}

describe('the user journey: submit, poll, summary, metrics, download', () => {
  let service: TestService;
  let scratch: string;

  before(async () => {
    await useTestBackend();
    ({ service, scratch } = await startServiceWithStandInWeights('journey', 1, [32]));
  });
  after(() => service.stop());

  const folderJob = (folder: string) => ({
    mode: 'feature_extraction',
    weights: 'random',
    inputSize: INPUT,
    epochs: 1,
    dataset: { type: 'folder', path: folder },
  });
  const completed = async (spec: object) => {
    const submitted = await service.http().post('/v1/jobs').send(spec);
    assert.equal(submitted.status, 202, submitted.text);
    const status = await pollJob(service, submitted.body.id, finished);
    assert.equal(status.state, 'completed', JSON.stringify(status.failure));
    return status;
  };

  const cases = [
    { mode: 'pretrained', totalParams: 25_557_032, trainableParams: 25_557_032, body: { weights: 'imagenet' } },
    {
      mode: 'feature_extraction',
      totalParams: 23_508_032 + 2048 * CLASSES + CLASSES,
      trainableParams: 2048 * CLASSES + CLASSES,
      body: { weights: 'imagenet', epochs: 2, checkpoints: { keepEveryN: 1 } },
    },
    {
      mode: 'fine_tuning',
      totalParams: 23_508_032 + 2048 * 512 + 512 + 512 * 256 + 256 + 256 * CLASSES + CLASSES,
      trainableParams: null,
      body: {
        weights: 'random',
        epochs: 2,
        batchSize: 8,
        checkpoints: { keepEveryN: 1 },
        fineTuning: { trainableFrom: 'layer4', freezeBatchNorm: true },
      },
    },
  ] as const;

  for (const c of cases) {
    it(`${c.mode}: completes, serves its summary, metrics and a checkpoint that predicts like the worker's model`, async () => {
      const submitted = await service
        .http()
        .post('/v1/jobs')
        // fp32: the downloaded model's probabilities are computed in fp32 below and held to the worker's within 1e-5.
        .send({ mode: c.mode, inputSize: INPUT, dataset, precision: 'fp32', ...c.body });
      assert.equal(submitted.status, 202, submitted.text);
      const status = await pollJob(service, submitted.body.id, finished);
      assert.equal(status.state, 'completed', JSON.stringify(status.failure));
      assert.equal(status.backend?.choice, 'wasm');
      assert.match(status.backend?.kernels ?? '', /^onednn \d/, 'the worker trains with the oneDNN kernels npm ci built');
      assert.equal(status.progress.percent, 100);
      const id = status.id;

      const summary = await service.http().get(`/v1/jobs/${id}/summary`);
      assert.equal(summary.status, 200);
      assert.equal(summary.body.totals.totalParams, c.totalParams);
      if (c.trainableParams !== null) assert.equal(summary.body.totals.trainableParams, c.trainableParams);
      assert.equal(summary.body.depth, 3);
      const text = await service.http().get(`/v1/jobs/${id}/summary?depth=1`).set('accept', 'text/plain');
      assert.match(text.text, new RegExp(`Total params: ${c.totalParams.toLocaleString('en-US')}`));

      const metrics = (await service.http().get(`/v1/jobs/${id}/metrics`)).body as Metrics;
      if (c.mode === 'pretrained') {
        assert.equal(metrics.epochs.length, 0, 'pretrained trains no epochs');
        assert.equal(metrics.evaluation?.images, CLASSES * 10);
        assert.equal(metrics.classNames.length, 1000);
      } else {
        assert.deepEqual(
          metrics.epochs.map((e) => e.epoch),
          [1, 2],
        );
        assert.ok(metrics.epochs.every((e) => e.validationAccuracy !== null && Number.isFinite(e.trainLoss)));
        assert.equal(metrics.classNames.length, CLASSES);
        const report = metrics.report!;
        assert.deepEqual(
          report.perClass.map((c) => c.className),
          metrics.classNames,
        );
        assert.deepEqual(report.confusionMatrix.classNames, metrics.classNames);
        assert.equal(
          report.confusionMatrix.matrix.flat().reduce((a, b) => a + b, 0),
          metrics.evaluation!.images,
        );
        // Every held-out image is kept with its probabilities (12 of at most 32): the reported top-5 must follow from them.
        assert.equal(metrics.validationPredictions.length, metrics.evaluation!.images);
        const inTop5 = metrics.validationPredictions.filter((p) => topIndices(p.probabilities, 5).includes(p.label)).length;
        assert.equal(metrics.evaluation!.top5Accuracy, inTop5 / metrics.validationPredictions.length);
        assert.equal(metrics.epochs.at(-1)!.validationTop5Accuracy, Math.round(metrics.evaluation!.top5Accuracy * 1e6) / 1e6);
        assert.ok(metrics.evaluation!.top5Accuracy >= metrics.evaluation!.accuracy!);
      }
      // Kept for the first 32 images evaluated: all 12 held out of a trained job, 32 of a pretrained job's 60.
      assert.equal(metrics.validationPredictions.length, c.mode === 'pretrained' ? 32 : metrics.evaluation!.images);

      const download = (await downloadWhenMade(() => service.http().get(`/v1/jobs/${id}/checkpoint`).buffer(true).parse(binary))).response;
      assert.equal(download.status, 200);
      assert.equal(download.headers['content-type'], 'application/gzip');
      assert.equal(Number(download.headers['content-length']), download.body.length);
      assert.match(download.headers['content-disposition'], new RegExp(`attachment; filename="${id}-final.tar.gz"`));
      const notModified = await service.http().get(`/v1/jobs/${id}/checkpoint`).set('if-none-match', download.headers.etag);
      assert.equal(notModified.status, 304);

      const unpacked = path.join(scratch, id);
      mkdirSync(unpacked);
      writeFileSync(path.join(unpacked, 'model.tar.gz'), download.body);
      await tar.x({ file: path.join(unpacked, 'model.tar.gz'), cwd: unpacked });
      const metadata = JSON.parse(readFileSync(path.join(unpacked, 'metadata.json'), 'utf8'));
      assert.deepEqual(metadata.classNames, metrics.classNames);
      assert.equal(metadata.preprocessing.crop, INPUT);
      assert.equal(metadata.spec.mode, c.mode);

      const loaded = await loadModel(new LocalArtifactStore(unpacked), '');
      const ours = await probabilitiesOf(loaded.model, service, metrics);
      const theirs = metrics.validationPredictions.flatMap((p) => p.probabilities);
      assert.ok(maxAbsDifference(ours, theirs) < 1e-5, `checkpoint vs worker: ${maxAbsDifference(ours, theirs)}`);

      const safetensors = (
        await downloadWhenMade(() => service.http().get(`/v1/jobs/${id}/checkpoint?format=safetensors`).buffer(true).parse(binary))
      ).response;
      assert.equal(safetensors.status, 200);
      const fresh = buildResNet50(loaded.config, { randomBackbone: false });
      importTorchvisionWeights(fresh, safetensors.body, { scope: 'all' });
      assert.ok(maxAbsDifference(await probabilitiesOf(fresh.model, service, metrics), theirs) < 1e-5);
      loaded.dispose();
      fresh.dispose();

      if (c.mode !== 'pretrained') {
        const epoch1 = (await downloadWhenMade(() => service.http().get(`/v1/jobs/${id}/checkpoint?epoch=1`))).response;
        assert.equal(epoch1.status, 200);
        assert.match(epoch1.headers['content-disposition'], /epoch-1\.tar\.gz/);
        assert.equal((await service.http().get(`/v1/jobs/${id}/checkpoint?epoch=7`)).status, 404);
      }
    });
  }

  it('trains on a folder dataset of JPEG, PNG and WebP files under DATA_DIR', async () => {
    const random = seededRandom(4);
    const encoders = [(s: Sharp) => s.jpeg(), (s: Sharp) => s.png(), (s: Sharp) => s.webp()];
    const extensions = ['jpg', 'png', 'webp'];
    for (const [label, name] of ['daisy', 'rose'].entries()) {
      const dir = path.join(service.config.DATA_DIR, 'flowers', name);
      mkdirSync(dir, { recursive: true });
      for (let i = 0; i < 6; i++) {
        const raw = renderSyntheticImage(label, 2, 40, random);
        await encoders[i % 3](sharp(raw, { raw: { width: 40, height: 40, channels: 3 } })).toFile(
          path.join(dir, `${i}.${extensions[i % 3]}`),
        );
      }
    }
    writeFileSync(path.join(service.config.DATA_DIR, 'flowers', 'daisy', 'notes.txt'), 'not an image: ignored');
    const status = await completed(folderJob('flowers'));
    const metrics = (await service.http().get(`/v1/jobs/${status.id}/metrics`)).body as Metrics;
    assert.deepEqual(metrics.classNames, ['daisy', 'rose']);
    assert.equal(metrics.evaluation?.images, 2, 'one of six images per class held out');
    // The job's own preflight decoded every file in full: four of each format, none skipped.
    const preflight = await service.http().get(`/v1/jobs/${status.id}/preflight`);
    assert.equal(preflight.status, 200);
    assert.deepEqual(preflight.body.formats, { jpeg: 4, png: 4, webp: 4 });
    assert.deepEqual([preflight.body.usable, preflight.body.bad, status.skippedFileCount], [12, [], 0]);
  });

  it('preflights a messy folder, then trains on it skipping exactly the unusable files', async () => {
    await writeMessyDataset(path.join(service.config.DATA_DIR, 'messy'));
    const preflight = await service
      .http()
      .post('/v1/datasets/preflight')
      .send({ dataset: { type: 'folder', path: 'messy' } });
    assert.equal(preflight.status, 200, preflight.text);
    const bad = Object.fromEntries((preflight.body.bad as Array<{ file: string; reason: string }>).map((b) => [b.file, b.reason]));
    assert.deepEqual(bad, MESSY_BAD_FILES);
    assert.equal(preflight.body.duplicates.length, 1);
    const escape = await service
      .http()
      .post('/v1/datasets/preflight')
      .send({ dataset: { type: 'folder', path: '../x' } });
    assert.equal(escape.status, 400);

    const status = await completed(folderJob('messy'));
    assert.deepEqual(Object.fromEntries(status.skippedFiles.map((s) => [s.file, s.reason])), MESSY_BAD_FILES);
  });

  it('serves a pretrained job without a dataset: summary, model and predictions, no evaluation', async () => {
    const status = await completed({ mode: 'pretrained', weights: 'imagenet', inputSize: INPUT });
    assert.equal(status.skippedFileCount, 0);
    const summary = await service.http().get(`/v1/jobs/${status.id}/summary?depth=0`).set('accept', 'text/plain');
    assert.match(summary.text, /Trainable params: 25,557,032/, "the seed's table: nothing frozen");
    const metrics = (await service.http().get(`/v1/jobs/${status.id}/metrics`)).body as Metrics;
    assert.deepEqual([metrics.evaluation, metrics.epochs.length, metrics.classNames.length], [null, 0, 1000]);
    assert.equal((await service.http().get(`/v1/jobs/${status.id}/preflight`)).status, 409, 'no dataset, no preflight');
    assert.equal((await service.http().get(`/v1/jobs/${status.id}/checkpoint?format=safetensors`)).status, 200);
    const image = await sharp(renderSyntheticImage(0, 2, 40, seededRandom(9)), { raw: { width: 40, height: 40, channels: 3 } })
      .png()
      .toBuffer();
    const predicted = await service.http().post(`/v1/jobs/${status.id}/predict?topK=3`).attach('image', image, 'x.png');
    assert.equal(predicted.status, 200, predicted.text);
    assert.equal(predicted.body.predictions[0].top.length, 3);
  });

  it('lists jobs newest first, by state, with pagination', async () => {
    const before = (await service.http().get('/v1/jobs')).body.total as number;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await completed({ mode: 'pretrained', weights: 'random', inputSize: INPUT, seed: i })).id);
    const page = await service.http().get('/v1/jobs?limit=2');
    assert.equal(page.status, 200);
    assert.equal(page.body.total, before + 3);
    assert.deepEqual(
      page.body.items.map((s: JobStatus) => s.id),
      [ids[2], ids[1]],
    );
    const next = await service.http().get('/v1/jobs?limit=2&offset=2');
    assert.equal(next.body.items[0].id, ids[0]);
    const done = await service.http().get('/v1/jobs?state=completed&limit=100');
    assert.ok(ids.every((id) => done.body.items.some((s: JobStatus) => s.id === id)));
    assert.ok(done.body.items.every((s: JobStatus) => s.state === 'completed'));
    // A job waiting behind a slow one is the one queued job the filter must find, and only it.
    const slow = await service
      .http()
      .post('/v1/jobs')
      .send({ mode: 'fine_tuning', weights: 'random', inputSize: INPUT, epochs: 50, dataset });
    const waiting = await service.http().post('/v1/jobs').send({ mode: 'pretrained', weights: 'random', inputSize: INPUT });
    await pollJob(service, slow.body.id, (s) => s.state === 'running');
    const queued = await service.http().get('/v1/jobs?state=queued&limit=100');
    assert.deepEqual(
      queued.body.items.map((s: JobStatus) => s.id),
      [waiting.body.id],
    );
    for (const id of [waiting.body.id, slow.body.id]) assert.equal((await service.http().delete(`/v1/jobs/${id}`)).status, 202);
    await pollJob(service, slow.body.id, finished);
  });

  it('refuses to cancel a finished job with 409', async () => {
    const { id } = await completed({ mode: 'pretrained', weights: 'random', inputSize: INPUT });
    const response = await service.http().delete(`/v1/jobs/${id}`);
    assert.equal(response.status, 409);
    assert.match(response.headers['content-type'], /problem\+json/);
    assert.equal(response.body.state, 'completed');
  });

  it('reports its live worker and backend in /readyz', async () => {
    const ready = await service.http().get('/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.body.workers.length, 1);
    assert.equal(ready.body.workers[0].backend.choice, 'wasm');
    assert.match(ready.body.workers[0].backend.kernels, /^onednn \d/);
  });
});
