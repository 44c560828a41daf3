import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { JobArtifacts } from '../../common/job-artifacts.js';
import type { EpochMetrics } from '../../schemas/metrics.js';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { seededRandom } from '../../common/random.js';
import { renderSyntheticImage } from '../../engine/data/synthetic.js';
import { completedJob, startServiceWithStandInWeights, type TestService, downloadWhenMade } from '../helpers/service.js';

const dataset = { type: 'synthetic', numClasses: 4, imagesPerClass: 30, imageSize: 32, seed: 1 } as const;

const unaugmented = { augmentation: { randomResizedCrop: false, horizontalFlip: false } };
const train = (service: TestService, spec: object) => completedJob(service, { inputSize: 32, dataset, ...spec });

const withoutTimings = (epochs: EpochMetrics[]) => epochs.map(({ seconds: _seconds, ...rest }) => rest);

describe('training controls on real jobs', () => {
  let service: TestService;
  before(async () => {
    ({ service } = await startServiceWithStandInWeights('controls', 2, [32]));
  });
  after(() => service.stop());

  it('stops early when validation loss stops improving and serves the best epoch as epoch=best', async () => {
    // A large learning rate overfits 96 images within a few epochs: validation loss turns up.
    const { id, metrics } = await train(service, {
      mode: 'feature_extraction',
      weights: 'imagenet',
      epochs: 40,
      optimizer: { learningRate: 0.05 },
      earlyStopping: { patience: 3, monitor: 'validation_loss' },
      ...unaugmented,
    });
    assert.ok(metrics.earlyStopping, 'the job stopped early');
    const { stoppedAfterEpoch, bestEpoch } = metrics.earlyStopping;
    assert.ok(stoppedAfterEpoch < 40, `stopped after ${stoppedAfterEpoch}`);
    assert.equal(metrics.epochs.length, stoppedAfterEpoch);
    assert.equal(stoppedAfterEpoch - bestEpoch, 3, 'patience 3');
    const lowest = metrics.epochs.reduce((a, b) => (b.validationLoss! < a.validationLoss! ? b : a));
    assert.equal(bestEpoch, lowest.epoch);
    assert.ok(Math.abs(metrics.evaluation!.loss! - lowest.validationLoss!) < 1e-5, 'the final model is the best epoch');
    const best = (await downloadWhenMade(() => service.http().get(`/v1/jobs/${id}/checkpoint?epoch=best`))).response;
    assert.equal(best.status, 200);
    assert.match(best.headers['content-disposition'] ?? JSON.stringify(best.headers), new RegExp(`-epoch-${bestEpoch}\\.tar\\.gz"`));
    const artifacts = new JobArtifacts(service.store, id);
    assert.deepEqual(
      await artifacts.checkpointEpochs(),
      [bestEpoch, stoppedAfterEpoch],
      'the default policy keeps the best and the latest',
    );
    for (const epoch of [bestEpoch, stoppedAfterEpoch])
      assert.equal(
        await service.store.stat(`${artifacts.checkpointFolder(epoch)}/optimizer.bin`),
        null,
        'no optimiser state once the job has ended',
      );
  });

  it('gives identical per-epoch metrics for two runs of the same spec and seed', async () => {
    // Augmentation on (the default), dropout and trainable BatchNorm: all of it must follow the seed.
    const spec = {
      mode: 'fine_tuning',
      weights: 'random',
      epochs: 2,
      batchSize: 8,
      seed: 5,
      dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 10, imageSize: 32, seed: 2 },
      fineTuning: { trainableFrom: 'layer4', freezeBatchNorm: false },
    };
    const first = await train(service, spec);
    const second = await train(service, spec);
    assert.equal(first.metrics.epochs.length, 2);
    assert.deepEqual(withoutTimings(second.metrics.epochs), withoutTimings(first.metrics.epochs));
  });

  it('follows the learning-rate schedule epoch by epoch', async () => {
    const spec = {
      mode: 'feature_extraction',
      weights: 'imagenet',
      epochs: 4,
      optimizer: { learningRate: 0.01 },
      schedule: { type: 'cosine', warmupEpochs: 1, minLearningRate: 0.001 },
      ...unaugmented,
    };
    const { metrics } = await train(service, spec);
    // Warm-up to 0.01 over epoch 1, then cosine from 0.01 to 0.001 over the 3 epochs left: 0.001 + 0.009 (1 + cos(pi t / 3)) / 2.
    const expected = [0.01, 0.01, 0.00775, 0.00325];
    const recorded = metrics.epochs.map((e) => e.learningRate);
    assert.equal(recorded.length, 4);
    recorded.forEach((rate, i) => assert.ok(Math.abs(rate - expected[i]) < 1e-12, `epoch ${i + 1}: ${rate}, not ${expected[i]}`));
  });

  it("applies label smoothing: the loss stays above the smoothed targets' entropy, which the same run without it goes below", async () => {
    const spec = { mode: 'feature_extraction', weights: 'imagenet', epochs: 8, optimizer: { learningRate: 0.01 }, ...unaugmented };
    const smoothing = 0.3;
    const [plain, smoothed] = [await train(service, spec), await train(service, { ...spec, labelSmoothing: smoothing })];
    // Cross-entropy against targets q is at least H(q): 1 - e + e/K on the true class, e/K elsewhere.
    const k = dataset.numClasses;
    const [onTrue, elsewhere] = [1 - smoothing + smoothing / k, smoothing / k];
    const floor = -onTrue * Math.log(onTrue) - (k - 1) * elsewhere * Math.log(elsewhere);
    assert.ok(
      smoothed.metrics.epochs.every((e) => e.trainLoss >= floor - 1e-4),
      `smoothed losses ${smoothed.metrics.epochs.map((e) => e.trainLoss)} vs floor ${floor}`,
    );
    assert.ok(
      plain.metrics.epochs.at(-1)!.trainLoss < floor,
      `unsmoothed final loss ${plain.metrics.epochs.at(-1)!.trainLoss} vs floor ${floor}`,
    );
  });

  it("weighs classes: balanced weights from the training split's counts, and a loss that differs from the unweighted run", async () => {
    // Two classes of 12 and 6 images: 10 and 5 train (one in five held out), so balanced = 15 / (2 x count).
    const random = seededRandom(8);
    for (const [label, count] of [
      [0, 12],
      [1, 6],
    ]) {
      const dir = path.join(service.config.DATA_DIR, 'uneven', `class-${label}`);
      mkdirSync(dir, { recursive: true });
      for (let i = 0; i < count; i++) {
        await sharp(renderSyntheticImage(label, 2, 32, random), { raw: { width: 32, height: 32, channels: 3 } })
          .png()
          .toFile(path.join(dir, `${i}.png`));
      }
    }
    const spec = {
      mode: 'feature_extraction',
      weights: 'imagenet',
      epochs: 2,
      dataset: { type: 'folder', path: 'uneven' },
      ...unaugmented,
    };
    const [plain, balanced] = [await train(service, spec), await train(service, { ...spec, classWeights: 'balanced' })];
    assert.equal(plain.metrics.classWeights, null);
    assert.deepEqual(balanced.metrics.classWeights, [0.75, 1.5]);
    assert.notEqual(balanced.metrics.epochs[0].trainLoss, plain.metrics.epochs[0].trainLoss);
  });
});
