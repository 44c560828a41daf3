import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '../../../engine/tf.js';
import { buildResNet50 } from '../../../engine/model/resnet50.js';
import { loadModel, saveModel } from '../../../engine/model/checkpoint-io.js';
import { LocalArtifactStore } from '../../../common/artifact-store.js';
import { summarize } from '../../../engine/model/summary.js';
import { trainStep } from '../../../engine/training/train-step.js';
import { bitIdentical, useTestBackend } from '../../helpers/tf.js';
import { readFloat32, tempDir } from '../../helpers/torch.js';

describe('checkpoints in the tfjs layers format', () => {
  let dir: string;
  let backend: string;
  before(async () => {
    backend = (await useTestBackend()).choice;
    dir = tempDir('checkpoint');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('round-trips through a fresh process with identical predictions', async () => {
    const resnet = buildResNet50({
      mode: 'fine_tuning',
      numClasses: 4,
      inputSize: 32,
      seed: 9,
      fineTuning: { trainableFrom: 'layer3', freezeBatchNorm: false },
    });
    // One step first, so the BN statistics are no longer their initial values.
    const images = tf.randomUniform<tf.Rank.R4>([4, 32, 32, 3], -2, 2, 'float32', 1);
    trainStep(resnet.network, tf.train.adam(0.01), images, tf.oneHot(tf.tensor1d([0, 1, 2, 3], 'int32'), 4) as tf.Tensor2D);
    const checkpoint = path.join(dir, 'epoch-1');
    await saveModel(resnet, new LocalArtifactStore(dir), 'epoch-1');
    assert.deepEqual(readdirSync(checkpoint).sort(), ['model.json', 'weights.bin']);
    assert.deepEqual(readdirSync(dir), ['epoch-1']);

    const expected = (resnet.model.predict(images) as tf.Tensor).dataSync();
    const inputFile = path.join(dir, 'input.f32');
    writeFileSync(inputFile, images.dataSync());
    const outFile = path.join(dir, 'out.f32');
    execFileSync(process.execPath, [
      '--import',
      'tsx',
      path.resolve(import.meta.dirname, '../../helpers/predict-from-checkpoint.ts'),
      checkpoint,
      inputFile,
      outFile,
      backend,
    ]);
    const both = readFloat32(outFile);
    assert.ok(bitIdentical(both.subarray(0, expected.length), expected as Float32Array), 'rebuilt model predicts identically');
    assert.ok(bitIdentical(both.subarray(expected.length), expected as Float32Array), 'tf.loadLayersModel predicts identically');
  });

  it('loads with the module tree, so the summary of a loaded model is the trained one', async () => {
    const loaded = await loadModel(new LocalArtifactStore(dir), 'epoch-1');
    const summary = summarize(loaded, 1);
    assert.equal(summary.totals.totalParams, 23_508_032 + 2048 * 512 + 512 + 512 * 256 + 256 + 256 * 4 + 4);
    assert.ok(summary.rows.find((r) => r.name === 'layer2')!.trainableParams === 0);
    assert.ok(summary.rows.find((r) => r.name === 'layer3')!.trainableParams > 0);
    loaded.dispose();
  });

  it('overwrites a checkpoint in place, leaving no partial files', async () => {
    const resnet = buildResNet50({ mode: 'feature_extraction', numClasses: 2, inputSize: 32 });
    const store = new LocalArtifactStore(dir);
    await saveModel(resnet, store, 'latest');
    await saveModel(resnet, store, 'latest');
    assert.ok(existsSync(path.join(dir, 'latest', 'model.json')));
    assert.deepEqual(readdirSync(path.join(dir, 'latest')).sort(), ['model.json', 'weights.bin']);
  });
});
