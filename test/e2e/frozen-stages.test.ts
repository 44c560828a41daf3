import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { JobStatus } from '../../schemas/job-status.js';
import type { Metrics } from '../../schemas/metrics.js';
import { completedJob, startService, storeStandInWeights, type TestService, type WorkerProcess } from '../helpers/service.js';
import { standInReference } from '../helpers/torch.js';

const dataset = { type: 'synthetic', numClasses: 3, imagesPerClass: 12, imageSize: 32, seed: 4 } as const;
const spec = {
  mode: 'fine_tuning',
  weights: 'imagenet',
  inputSize: 32,
  epochs: 3,
  batchSize: 6,
  dataset,
  augmentation: { randomResizedCrop: false, horizontalFlip: false },
  fineTuning: { trainableFrom: 'layer3', freezeBatchNorm: true },
  optimizer: { learningRate: 0.001 },
  precision: 'fp32',
};
const IMAGES = 36;

describe("fine-tuning reuses the frozen stages' output", () => {
  let service: TestService;
  let worker: WorkerProcess | null = null;
  before(async () => {
    service = await startService('frozen-stages');
    await storeStandInWeights(service.store, path.join(standInReference(['--seed', '3', '--sizes', '32']), 'weights.safetensors'));
  });
  after(() => service.stop());

  /** The spec's job (with `changes`) on a worker alone with these settings. */
  async function runOn(env: Record<string, string>, changes: object = {}): Promise<{ id: string; metrics: Metrics }> {
    if (worker) await worker.terminate();
    worker = await service.startWorker(env);
    return completedJob(service, { ...spec, ...changes });
  }

  let reused: Metrics;
  it('runs the frozen stages once per image, and trains as the job that runs them every step', async () => {
    reused = (await runOn({})).metrics;
    assert.deepEqual(reused.frozenStages, {
      stage: 'layer3',
      reused: true,
      imagesComputed: IMAGES,
      bytes: IMAGES * 512 * 4 * 4 * 4,
      storedAs: 'float32',
      reason: null,
    });
    const { metrics: everyStep } = await runOn({ FEATURE_CACHE: '0' });
    assert.deepEqual(everyStep.frozenStages, { stage: 'layer3', reused: false, imagesComputed: 0, bytes: 0, reason: 'FEATURE_CACHE=0' });
    assert.equal(everyStep.epochs.length, 3);
    for (const [i, epoch] of reused.epochs.entries()) {
      const other = everyStep.epochs[i];
      for (const field of ['trainLoss', 'validationLoss'] as const)
        assert.ok(Math.abs((epoch[field] ?? 0) - (other[field] ?? 0)) <= 1e-3 * Math.abs(other[field] ?? 1), `epoch ${i + 1} ${field}`);
      assert.equal(epoch.validationAccuracy, other.validationAccuracy, `epoch ${i + 1}`);
    }
    assert.ok(reused.epochs[2].trainLoss < reused.epochs[0].trainLoss, 'it learns');
  });

  it('runs them every step, and says why, when their output for every image is over the budget', async () => {
    const { metrics: over } = await runOn({ FEATURE_CACHE_MAX_BYTES: String(1024) });
    assert.deepEqual(over.frozenStages, {
      stage: 'layer3',
      reused: false,
      imagesComputed: 0,
      bytes: IMAGES * 512 * 4 * 4 * 4,
      storedAs: 'float32',
      reason: 'over FEATURE_CACHE_MAX_BYTES (1024)',
    });
    assert.deepEqual(
      over.epochs.map((epoch) => epoch.validationAccuracy),
      reused.epochs.map((epoch) => epoch.validationAccuracy),
    );
  });

  it('keeps them as bfloat16 in a bf16 job (half the bytes), as float32 where the CPU runs it in fp32', async () => {
    const { id, metrics } = await runOn({}, { precision: 'bf16' });
    const ran = ((await service.http().get(`/v1/jobs/${id}`)).body as JobStatus).backend?.precision;
    const bfloat16 = ran === 'bf16';
    assert.deepEqual(metrics.frozenStages, {
      stage: 'layer3',
      reused: true,
      imagesComputed: IMAGES,
      bytes: IMAGES * 512 * 4 * 4 * (bfloat16 ? 2 : 4),
      storedAs: bfloat16 ? 'bfloat16' : 'float32',
      reason: null,
    });
    assert.ok(metrics.epochs[2].trainLoss < metrics.epochs[0].trainLoss, 'it learns');
  });
});
