import type { Metrics } from '../../schemas/metrics.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { seededRandom } from '../../common/random.js';
import { renderSyntheticImage } from '../../engine/data/synthetic.js';
import { ONNX_OPSET } from '../../engine/model/onnx-export.js';
import type { ImagePrediction } from '../../schemas/predict.js';
import { nchwOf, onnxHeader, onnxLogits, softmax } from '../helpers/onnx.js';
import { binary, completedJob, downloadWhenMade, startServiceWithStandInWeights, type TestService } from '../helpers/service.js';
import { torchReference } from '../helpers/torch.js';
import * as tar from 'tar';

const INPUT = 32;
const CLASSES = 3;
const dataset = { type: 'synthetic', numClasses: CLASSES, imagesPerClass: 8, imageSize: 40, seed: 5 } as const;
const training = { weights: 'imagenet', inputSize: INPUT, epochs: 2, batchSize: 8, dataset, checkpoints: { keepEveryN: 1 } } as const;

describe('model exports: ONNX and safetensors', () => {
  let service: TestService;
  let scratch: string;
  const images: string[] = [];
  const jobs: Record<string, string> = {};

  before(async () => {
    ({ service, scratch } = await startServiceWithStandInWeights('exports', 2, [INPUT]));
    for (let i = 0; i < 3; i++) {
      const file = path.join(scratch, `photo-${i}.png`);
      const pixels = renderSyntheticImage(i % CLASSES, CLASSES, 56 + 8 * i, seededRandom(20 + i));
      await sharp(pixels, { raw: { width: 56 + 8 * i, height: 56 + 8 * i, channels: 3 } })
        .png()
        .toFile(file);
      images.push(file);
    }
    const specs = {
      pretrained: { mode: 'pretrained', weights: 'imagenet', inputSize: INPUT },
      feature_extraction: { mode: 'feature_extraction', ...training },
      // Trained BatchNorms: their running statistics change, and the export folds the trained ones.
      fine_tuning: { mode: 'fine_tuning', ...training, fineTuning: { trainableFrom: 'layer4', freezeBatchNorm: false } },
    };
    for (const [mode, spec] of Object.entries(specs)) jobs[mode] = (await completedJob(service, spec)).id;
  });
  after(() => service.stop());

  const download = async (id: string, query: string) => {
    const { response } = await downloadWhenMade(() => service.http().get(`/v1/jobs/${id}/checkpoint?${query}`).buffer(true).parse(binary));
    assert.equal(response.status, 200, (response.body as Buffer).subarray(0, 2000).toString());
    return response;
  };

  it('says the first download of a converted format is being made (202, Retry-After, Location), then serves it', async () => {
    const url = `/v1/jobs/${jobs.pretrained}/checkpoint?epoch=final&format=onnx`;
    const { first, response } = await downloadWhenMade(() => service.http().get(url).buffer(true).parse(binary));
    assert.equal(first.status, 202);
    assert.ok(Number(first.headers['retry-after']) > 0);
    assert.equal(first.headers.location, url);
    assert.equal(JSON.parse(String(first.body)).state, 'converting');
    assert.equal(response.status, 200);
  });

  for (const mode of ['pretrained', 'feature_extraction', 'fine_tuning']) {
    it(`exports a ${mode} model to ONNX that gives the service's own predictions within 1e-4`, async () => {
      const response = await download(jobs[mode], 'format=onnx');
      assert.match(response.headers['content-disposition'], new RegExp(`${jobs[mode]}-final\\.onnx`));
      const file = response.body as Buffer;
      const { irVersion, opset, metadata } = onnxHeader(file);
      assert.ok(opset >= 17 && opset === ONNX_OPSET && irVersion >= 8, `opset ${opset}, IR ${irVersion}`);
      assert.equal(metadata.mode, mode);
      const classNames = JSON.parse(metadata.class_names) as string[];
      assert.equal(classNames.length, mode === 'pretrained' ? 1000 : CLASSES);

      const logits = await onnxLogits(file, images);
      let request = service.http().post(`/v1/jobs/${jobs[mode]}/predict?precision=fp32&topK=${Math.min(classNames.length, 10)}`);
      for (const image of images) request = request.attach('images', image);
      const predicted = await request;
      assert.equal(predicted.status, 200, predicted.text);
      (predicted.body.predictions as ImagePrediction[]).forEach((prediction, n) => {
        const probabilities = softmax(logits[n]);
        for (const { index, className, probability } of prediction.top) {
          assert.ok(
            Math.abs(probabilities[index] - probability) < 1e-4,
            `${mode} image ${n} class ${index}: ${probabilities[index]} vs ${probability}`,
          );
          assert.equal(classNames[index], className);
        }
      });
    });
  }

  it('exports an epoch checkpoint as ONNX and as safetensors that torchvision loads strictly, both giving the same logits', async () => {
    const id = jobs.fine_tuning;
    const onnx = (await download(id, 'epoch=1&format=onnx')).body as Buffer;
    assert.equal(onnxHeader(onnx).metadata.checkpoint, 'epoch-1');
    const safetensors = await download(id, 'epoch=1&format=safetensors');
    assert.match(safetensors.headers['content-disposition'], new RegExp(`${id}-epoch-1\\.safetensors`));
    const again = await service
      .http()
      .get(`/v1/jobs/${id}/checkpoint?epoch=1&format=safetensors`)
      .set('if-none-match', safetensors.headers.etag);
    assert.equal(again.status, 304, 'kept and served by its ETag');

    const [logits] = await onnxLogits(onnx, [images[0]]);
    const final = await onnxLogits((await download(id, 'format=onnx')).body as Buffer, [images[0]]);
    assert.notDeepEqual(Array.from(final[0]), Array.from(logits), 'epoch 1 is not the final model');

    // PyTorch on the same preprocessed input: what the ONNX model was given.
    const weights = path.join(scratch, 'epoch-1.safetensors');
    writeFileSync(weights, safetensors.body as Buffer);
    const input = path.join(scratch, 'epoch-1-input.f32');
    writeFileSync(input, await nchwOf(onnx, [images[0]]));
    const torchOut = path.join(scratch, 'epoch-1-logits.f32');
    const torchArgs = ['--head', 'fine_tuning', '--num-classes', String(CLASSES), '--size', String(INPUT)];
    torchReference(['check', '--weights', weights, ...torchArgs, '--input', input, '--logits-out', torchOut]);
    const torchLogits = new Float32Array(Uint8Array.from(readFileSync(torchOut)).buffer);
    assert.equal(torchLogits.length, CLASSES);
    torchLogits.forEach((value, i) => assert.ok(Math.abs(value - logits[i]) < 1e-4, `logit ${i}: PyTorch ${value}, ONNX ${logits[i]}`));
  });

  it('answers an unknown format and a missing epoch with 4xx problems', async () => {
    const badFormat = await service.http().get(`/v1/jobs/${jobs.pretrained}/checkpoint?format=pt`);
    assert.equal(badFormat.status, 400);
    assert.match(badFormat.text, /format/);
    const noEpoch = await service.http().get(`/v1/jobs/${jobs.fine_tuning}/checkpoint?epoch=9&format=onnx`);
    assert.equal(noEpoch.status, 404);
    assert.match(noEpoch.headers['content-type'], /problem\+json/);
  });

  /** Bytes of every file under a folder of the local artifact store. */
  const bytesUnder = (folder: string): number =>
    readdirSync(folder, { withFileTypes: true }).reduce((sum, entry) => {
      const full = path.join(folder, entry.name);
      return sum + (entry.isDirectory() ? bytesUnder(full) : statSync(full).size);
    }, 0);
  const jobFolder = (id: string) => path.join(service.config.ARTIFACTS_DIR, 'jobs', id);

  it('keeps only the tensors that train, reading the frozen ones from the pinned variant; downloads are whole', async () => {
    const whole = (await download(jobs.feature_extraction, 'format=safetensors')).body as Buffer;
    const features = jobFolder(jobs.feature_extraction);
    // The head (2048 x 3 + 3 floats) in each saved model; no optimiser state once the job has ended.
    for (const folder of ['checkpoints/epoch-0001', 'checkpoints/epoch-0002', 'final'])
      assert.equal(statSync(path.join(features, folder, 'weights.bin')).size, 4 * (2048 * CLASSES + CLASSES), folder);
    // int8.json where the job offers int8: the activation ranges and channel means (a few hundred KB).
    const { int8 } = (await service.http().get(`/v1/jobs/${jobs.feature_extraction}/metrics`)).body as Metrics;
    const expected = ['metadata.json', 'model.json', 'weights.bin', ...(int8?.offered ? ['int8.json'] : [])];
    assert.deepEqual(readdirSync(path.join(features, 'final')).sort(), expected.sort());
    const kept = bytesUnder(features) - bytesUnder(path.join(features, 'downloads'));
    assert.ok(kept < 0.01 * whole.length, `the job keeps ${kept} bytes; the whole model is ${whole.length}`);
    // layer4 fine-tuning: layer4 and the head (~15M of ~23.5M floats), not the frozen stages.
    const tuned = statSync(path.join(jobFolder(jobs.fine_tuning), 'final', 'weights.bin')).size;
    assert.ok(tuned > 0.5 * whole.length && tuned < 0.7 * whole.length, `layer4 and the head: ${tuned} of ${whole.length}`);

    // The tar.gz holds the whole tfjs model: every weight, and no reference to the store.
    const archive = (await download(jobs.feature_extraction, 'format=tar.gz')).body as Buffer;
    const unpacked = path.join(scratch, 'features-tfjs');
    mkdirSync(unpacked);
    writeFileSync(path.join(unpacked, 'model.tar.gz'), archive);
    await tar.x({ file: path.join(unpacked, 'model.tar.gz'), cwd: unpacked, strict: true });
    const modelJson = JSON.parse(readFileSync(path.join(unpacked, 'model.json'), 'utf8')) as {
      weightsManifest: Array<{ weights: Array<{ shape: number[] }> }>;
      userDefinedMetadata: Record<string, unknown>;
    };
    const floats = modelJson.weightsManifest[0].weights.reduce((sum, w) => sum + w.shape.reduce((a, b) => a * b, 1), 0);
    assert.equal(statSync(path.join(unpacked, 'weights.bin')).size, 4 * floats);
    assert.ok(floats > 23_000_000, `${floats} floats: the whole model`);
    assert.deepEqual(Object.keys(modelJson.userDefinedMetadata), ['retrainModelConfig']);
  });

  it('refuses to remove the variant while jobs read it, and removes it once they are purged', async () => {
    const env = { ...process.env, ...service.env };
    const removeImagenet = () =>
      spawnSync(process.execPath, [path.join(import.meta.dirname, '../../bin/retrain.mjs'), 'weights', 'remove', 'imagenet'], {
        encoding: 'utf8',
        env,
      });
    const refused = removeImagenet();
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /cannot remove weights "imagenet": the saved models of 2 job\(s\) read/);
    for (const mode of ['feature_extraction', 'fine_tuning']) assert.match(refused.stderr, new RegExp(jobs[mode]));
    for (const id of Object.values(jobs)) assert.equal((await service.http().delete(`/v1/jobs/${id}?purge=true`)).status, 204);
    const removed = removeImagenet();
    assert.equal(removed.status, 0, removed.stderr);
    assert.deepEqual(JSON.parse(removed.stdout), { removed: 'imagenet' });
  });
});
