import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { EpochMetrics } from '../../schemas/metrics.js';
import { learningRateAt } from '../../engine/training/controls.js';
import { JobSpec, type TrainingJobSpec } from '../../schemas/job-spec.js';
import { completedJob, startServiceWithStandInWeights, type TestService } from '../helpers/service.js';

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
      mode: 'feature_extraction', weights: 'imagenet', epochs: 40, optimizer: { learningRate: 0.05 },
      earlyStopping: { patience: 3, monitor: 'validation_loss' }, ...unaugmented,
    });
    assert.ok(metrics.earlyStopping, 'the job stopped early');
    const { stoppedAfterEpoch, bestEpoch } = metrics.earlyStopping!;
    assert.ok(stoppedAfterEpoch < 40, `stopped after ${stoppedAfterEpoch}`);
    assert.equal(metrics.epochs.length, stoppedAfterEpoch);
    assert.equal(stoppedAfterEpoch - bestEpoch, 3, 'patience 3');
    const lowest = metrics.epochs.reduce((a, b) => (b.validationLoss! < a.validationLoss! ? b : a));
    assert.equal(bestEpoch, lowest.epoch);
    assert.ok(Math.abs(metrics.evaluation!.loss! - lowest.validationLoss!) < 1e-5, 'the final model is the best epoch');
    const best = await service.http().get(`/v1/jobs/${id}/checkpoint?epoch=best`);
    assert.equal(best.status, 200);
    assert.match(best.headers['content-disposition'], new RegExp(`-epoch-${bestEpoch}\\.tar\\.gz"`));
  });

  it('gives identical per-epoch metrics for two runs of the same spec and seed', async () => {
    // Augmentation on (the default), dropout and trainable BatchNorm: all of it must follow the seed.
    const spec = {
      mode: 'fine_tuning', weights: 'random', epochs: 2, batchSize: 8, seed: 5,
      dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 10, imageSize: 32, seed: 2 },
      fineTuning: { trainableFrom: 'layer4', freezeBatchNorm: false },
    };
    const first = await train(service, spec);
    const second = await train(service, spec);
    assert.equal(first.metrics.epochs.length, 2);
    assert.deepEqual(withoutTimings(second.metrics.epochs), withoutTimings(first.metrics.epochs));
  });

  it('applies the learning-rate schedule, class weights and label smoothing', async () => {
    const spec = {
      mode: 'feature_extraction', weights: 'imagenet', epochs: 4, optimizer: { learningRate: 0.01 },
      schedule: { type: 'cosine', warmupEpochs: 1, minLearningRate: 0.001 }, classWeights: 'balanced', labelSmoothing: 0.1,
      ...unaugmented,
    };
    const { metrics } = await train(service, spec);
    const parsed = JobSpec.parse({ ...spec, inputSize: 32, dataset }) as TrainingJobSpec;
    assert.deepEqual(metrics.epochs.map((e) => e.learningRate), [1, 2, 3, 4].map((epoch) => learningRateAt(parsed, epoch)));
    assert.ok(metrics.epochs.at(-1)!.trainLoss > 0.1, 'label smoothing keeps the loss above zero');
  });
});
