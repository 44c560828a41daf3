import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../../../engine/tf.js';
import { JobSpec, type TrainingJobSpec } from '../../../schemas/job-spec.js';
import type { EpochMetrics } from '../../../schemas/metrics.js';
import { bestEpochOf, classWeightsFor, learningRateAt, setLearningRate, shouldStop } from '../../../engine/training/controls.js';
import { FusedAdamOptimizer } from '../../../engine/training/adam.js';

const spec = (extra: object) =>
  JobSpec.parse({
    mode: 'feature_extraction',
    dataset: { type: 'synthetic' },
    epochs: 10,
    optimizer: { learningRate: 0.1 },
    ...extra,
  }) as TrainingJobSpec;
const close = (a: number, b: number) => Math.abs(a - b) < 1e-12;

describe('training controls', () => {
  it('schedules the learning rate: constant, step, cosine, with linear warm-up', () => {
    const rates = (extra: object) => Array.from({ length: 10 }, (_, i) => learningRateAt(spec(extra), i + 1));
    assert.ok(rates({}).every((lr) => lr === 0.1));
    const step = rates({ schedule: { type: 'step', stepSize: 3, gamma: 0.5 } });
    assert.ok(
      [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025].every((lr, i) => close(step[i], lr)),
      String(step),
    );
    const cosine = rates({ schedule: { type: 'cosine', minLearningRate: 0.01 } });
    assert.equal(cosine[0], 0.1);
    assert.ok(close(cosine[5], 0.01 + (0.09 * (1 + Math.cos(Math.PI / 2))) / 2));
    assert.ok(
      cosine.every((lr, i) => i === 0 || lr < cosine[i - 1]),
      'cosine decays monotonically',
    );
    const warm = rates({ schedule: { type: 'cosine', warmupEpochs: 2 } });
    assert.ok(close(warm[0], 0.05) && close(warm[1], 0.1) && close(warm[2], 0.1), String(warm));
  });

  it('sets the rate the next step of every optimizer a job can use takes', () => {
    // One step on w = 1 with gradient 1 moves w by the rate: SGD and momentum's first step by lr x 1, Adam's by
    // lr x m/(sqrt(v) + eps) = lr x 1/(1 + 1e-8).
    const optimizers: Array<[string, () => tf.Optimizer]> = [
      ['sgd', () => tf.train.sgd(0.5)],
      ['momentum', () => tf.train.momentum(0.5, 0.9)],
      ['adam', () => new FusedAdamOptimizer(0.5, 0.9, 0.999, 1e-8)],
    ];
    for (const [name, make] of optimizers) {
      const optimizer = make();
      const w = tf.variable(tf.scalar(1), true, `w-${name}`);
      setLearningRate(optimizer, 0.125);
      optimizer.applyGradients({ [w.name]: tf.scalar(1) });
      assert.ok(Math.abs(1 - w.dataSync()[0] - 0.125) < 1e-6, `${name} stepped by ${1 - w.dataSync()[0]}`);
      optimizer.dispose();
      w.dispose();
    }
  });

  it("weighs classes as scikit-learn's balanced, or as given", () => {
    assert.deepEqual(classWeightsFor(spec({ classWeights: 'balanced' }), [0, 0, 0, 1], 2), [4 / 6, 2]);
    assert.deepEqual(classWeightsFor(spec({ classWeights: [1, 3, 2, 1] }), [0], 4), [1, 3, 2, 1]);
    assert.throws(() => classWeightsFor(spec({ classWeights: [1, 3] }), [0], 4), /2 weights for 4 classes/);
    assert.equal(classWeightsFor(spec({}), [0, 1], 2), null);
  });

  it('finds the best epoch and stops after `patience` epochs without improvement', () => {
    const epochs = [0.9, 0.5, 0.4, 0.45, 0.41, 0.6].map((validationLoss, i): EpochMetrics => ({
      epoch: i + 1,
      trainLoss: 0,
      trainAccuracy: 0,
      validationLoss,
      validationAccuracy: 1 - validationLoss,
      validationTop5Accuracy: 1,
      learningRate: 0.1,
      seconds: 1,
    }));
    assert.equal(bestEpochOf(epochs)?.epoch, 3);
    assert.equal(bestEpochOf(epochs, 'validation_accuracy')?.epoch, 3);
    assert.equal(bestEpochOf(epochs, 'validation_loss', 0.2)?.epoch, 2, 'improvements below minDelta do not count');
    assert.equal(shouldStop(epochs.slice(0, 4), { patience: 2, monitor: 'validation_loss', minDelta: 0 }), false);
    assert.equal(shouldStop(epochs.slice(0, 5), { patience: 2, monitor: 'validation_loss', minDelta: 0 }), true);
    assert.equal(shouldStop(epochs, undefined), false);
  });

  it('rejects class weights that do not match a synthetic data set, naming the field', () => {
    const parsed = JobSpec.safeParse({ mode: 'fine_tuning', dataset: { type: 'synthetic', numClasses: 3 }, classWeights: [1, 2] });
    assert.equal(parsed.success, false);
    assert.deepEqual(
      parsed.error.issues.map((i) => i.path.join('.')),
      ['classWeights'],
    );
  });
});
