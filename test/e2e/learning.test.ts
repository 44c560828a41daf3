import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Metrics } from '../../schemas/metrics.js';
import { completedJob, startServiceWithStandInWeights, type TestService } from '../helpers/service.js';

// Classes a CNN can tell apart (hue and shape), 30 images each; 20% held out per class.
const dataset = { type: 'synthetic', numClasses: 4, imagesPerClass: 30, imageSize: 32, seed: 1 } as const;

// Random crops down to 8% of a 32-px image leave little to learn from: these jobs train unaugmented.
const trainJob = (service: TestService, spec: object) =>
  completedJob(service, { inputSize: 32, dataset, augmentation: { randomResizedCrop: false, horizontalFlip: false }, ...spec });
const train = async (service: TestService, spec: object) => (await trainJob(service, spec)).metrics;

/**
 * The fewest right answers out of `n` that a model guessing among `classes` reaches with probability
 * below 1e-6 in any of `looks` epochs (binomial tail, Bonferroni over the epochs): a floor no model that
 * learned nothing passes, whatever the data's difficulty.
 */
function beyondChance(n: number, classes: number, looks: number): number {
  const p = 1 / classes;
  const choose = (k: number) => Array.from({ length: k }, (_, i) => (n - i) / (i + 1)).reduce((a, b) => a * b, 1);
  let tail = 0;
  for (let k = n; k >= 0; k--) {
    tail += choose(k) * p ** k * (1 - p) ** (n - k);
    if (tail * looks >= 1e-6) return k + 1;
  }
  return 0;
}

/** `at: 'last'` judges the last epoch; `at: 'best'` the best one (training that still oscillates), with the floor raised for it. */
function assertLearned(metrics: Metrics, epochs: number, at: 'last' | 'best' = 'last') {
  const [first, last] = [metrics.epochs[0], metrics.epochs.at(-1)!];
  assert.equal(metrics.epochs.length, epochs);
  assert.ok(last.trainLoss < first.trainLoss / 2, `train loss ${first.trainLoss} -> ${last.trainLoss}`);
  const held = metrics.evaluation!.images;
  assert.equal(held, 24);
  const right = metrics.epochs.map((epoch) => Math.round((epoch.validationAccuracy ?? 0) * held));
  const floor = beyondChance(held, dataset.numClasses, at === 'last' ? 1 : epochs);
  const judged = at === 'last' ? right.at(-1)! : Math.max(...right);
  assert.ok(
    judged >= floor,
    `${judged} of ${held} right ${at === 'last' ? 'at the end' : 'at best'} (per epoch ${right.join(', ')}), chance floor ${floor}`,
  );
}

describe('learning is real', () => {
  let service: TestService;
  before(async () => {
    ({ service } = await startServiceWithStandInWeights('learning', 2, [32]));
  });
  after(() => service.stop());

  // No ImageNet weights can be downloaded here: the frozen backbone is torchvision's ResNet-50 with
  // seeded random weights and data-calibrated BatchNorm statistics, written by PyTorch. Random conv
  // features still carry colour and shape, which is what these classes differ in.
  it('feature_extraction on a frozen (stand-in) ImageNet backbone classifies held-out images far beyond chance', async () => {
    const metrics = await train(service, {
      mode: 'feature_extraction',
      weights: 'imagenet',
      epochs: 20,
      optimizer: { learningRate: 0.003 },
    });
    assertLearned(metrics, 20);
    assert.deepEqual(
      { hit: metrics.featureCache?.hit, backboneImages: metrics.featureCache?.backboneImages },
      { hit: false, backboneImages: 120 },
      'the backbone ran once per image over all 20 epochs',
    );
  });

  it('a second feature_extraction job on the same data and weights runs the backbone zero times', async () => {
    const metrics = await train(service, { mode: 'feature_extraction', weights: 'imagenet', epochs: 2, optimizer: { learningRate: 0.01 } });
    assert.deepEqual(
      { hit: metrics.featureCache?.hit, backboneImages: metrics.featureCache?.backboneImages },
      { hit: true, backboneImages: 0 },
    );
    assert.equal(metrics.epochs.length, 2);
  });

  // From random weights the whole network must learn, so BatchNorm trains too (freezeBatchNorm false).
  // Adam at 1e-3 on 96 images with BatchNorm on batch statistics converges by epoch 4-5, then
  // oscillates (validation accuracy between 0.67 and 1 in later epochs, with tfjs' composed BatchNorm as
  // with oneDNN's), and fresh processes do not repeat a run bit for bit yet (issue 9): the best epoch
  // is judged.
  const FINE_TUNING_EPOCHS = 8;
  it('fine_tuning in fp32 from random weights with freezeBatchNorm false classifies held-out images far beyond chance', async () => {
    const metrics = await train(service, {
      mode: 'fine_tuning',
      weights: 'random',
      epochs: FINE_TUNING_EPOCHS,
      precision: 'fp32',
      fineTuning: { trainableFrom: 'conv1', freezeBatchNorm: false },
    });
    assertLearned(metrics, FINE_TUNING_EPOCHS, 'best');
  });

  const hasBf16 = /\bavx512_bf16\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  const withoutBf16 =
    'this CPU has no AVX512-BF16: a bf16 job would run in fp32, as the test before (the kernels test checks that fallback)';
  // `auto` (the default) asks for what `bf16` asks for on a CPU that has it, and says which ran.
  it(
    'fine_tuning with precision auto (the default) runs in bf16 here, learns as well, and says bf16 ran',
    { skip: hasBf16 ? false : withoutBf16 },
    async () => {
      const { id, metrics } = await trainJob(service, {
        mode: 'fine_tuning',
        weights: 'random',
        epochs: FINE_TUNING_EPOCHS,
        fineTuning: { trainableFrom: 'conv1', freezeBatchNorm: false },
      });
      assertLearned(metrics, FINE_TUNING_EPOCHS, 'best');
      const status = (await service.http().get(`/v1/jobs/${id}`)).body as { backend: { kernels: string; precision?: string } };
      assert.match(status.backend.kernels, /^onednn/);
      assert.equal(status.backend.precision, 'bf16');
      const logs = (await service.http().get(`/v1/jobs/${id}/logs`)).text;
      assert.match(logs, /precision auto: this job runs in bf16/);
    },
  );
});
