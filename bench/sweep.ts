// What ASHA saves: `npm run bench:sweep` (Redis on REDIS_URL; Debian's dataset-fashion-mnist). A transfer as
// practitioners sweep it: a backbone trained on five Fashion-MNIST classes (the upstream job), then a random
// search of 12 trials of heads for the other five classes on it at 32 px, with ASHA and run to the end, one
// after the other on the same API and two workers. Prints one JSON object: wall seconds, the best validation
// accuracy and the epochs trained of each, and their ratios.
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { rungsOf } from '../schemas/sweep.js';
import type { JobStatus } from '../schemas/job-status.js';
import type { SweepStatus } from '../schemas/sweep.js';
import { startService, type TestService } from '../test/helpers/service.js';
import { FASHION_MNIST, FASHION_MNIST_CLASSES, writeFashionMnistFolder } from './fashion-mnist.js';

const { values } = parseArgs({
  options: {
    trials: { type: 'string', default: '12' },
    images: { type: 'string', default: '2000' },
    'upstream-images': { type: 'string', default: '3000' },
    'upstream-epochs': { type: 'string', default: '4' },
    // 'random': the sweep starts from random weights instead of the upstream job (the earlier runs' setup).
    weights: { type: 'string', default: 'upstream' },
    'max-epochs': { type: 'string', default: '9' },
    'min-epochs': { type: 'string', default: '2' },
    'reduction-factor': { type: 'string', default: '3' },
    brackets: { type: 'string', default: '1' },
    seed: { type: 'string', default: '7' },
    // true: flips, so the backbone runs every epoch (no cached CNN codes) and an epoch costs what
    // fine-tuning the last stage would: about a minute per worker here at 2,000 photos.
    augment: { type: 'string', default: 'false' },
  },
});

const trials = Number(values.trials);
const maxEpochs = Number(values['max-epochs']);
const asha = {
  type: 'asha',
  minEpochs: Number(values['min-epochs']),
  reductionFactor: Number(values['reduction-factor']),
  maxEpochs,
  brackets: Number(values.brackets),
};
const rungs = rungsOf(asha);

// The upstream job learns the first five classes; the sweep's heads learn the other five on its backbone.
const UPSTREAM_CLASSES = FASHION_MNIST_CLASSES.slice(0, 5);
const SWEEP_CLASSES = FASHION_MNIST_CLASSES.slice(5);

function spec(withAsha: boolean, weights: unknown) {
  return {
    name: withAsha ? 'bench asha' : 'bench to the end',
    base: {
      mode: 'feature_extraction',
      weights,
      inputSize: 32,
      epochs: maxEpochs,
      dataset: { type: 'folder', path: 'fashion' },
      augmentation: { randomResizedCrop: false, horizontalFlip: values.augment === 'true' },
    },
    parameters: {
      'optimizer.learningRate': { distribution: 'log_uniform', min: 1e-4, max: values.weights === 'random' ? 3e-1 : 1e-1 },
      labelSmoothing: { distribution: 'uniform', min: 0, max: 0.2 },
      batchSize: { values: [16, 32, 64] },
    },
    search: { method: 'random', trials, seed: Number(values.seed) },
    earlyStopping: withAsha ? asha : { type: 'none' },
    parallelism: 2,
  };
}

/** Runs a sweep to its end: wall seconds, the best objective and the epochs its trials trained. */
async function run(service: TestService, withAsha: boolean, weights: unknown) {
  const started = Date.now();
  const created = await service.http().post('/v1/sweeps').send(spec(withAsha, weights));
  if (created.status !== 202) throw new Error(`POST /v1/sweeps answered ${created.status}: ${created.text}`);
  let sweep = created.body as SweepStatus;
  while (sweep.state === 'running') {
    await sleep(1000);
    sweep = (await service.http().get(`/v1/sweeps/${sweep.id}`)).body as SweepStatus;
  }
  return {
    state: sweep.state,
    wallSeconds: Math.round((Date.now() - started) / 100) / 10,
    bestValidationAccuracy: sweep.best?.value ?? null,
    bestTrial: sweep.best?.trial ?? null,
    epochsTrained: sweep.trials.reduce((sum, trial) => sum + trial.epochs.length, 0),
    stoppedEarly: sweep.trials.filter((trial) => trial.state === 'stopped_early').length,
  };
}

/** Runs a job to its end; throws unless it completed. */
async function runJob(service: TestService, spec: object): Promise<JobStatus> {
  const created = await service.http().post('/v1/jobs').send(spec);
  if (created.status !== 202) throw new Error(`POST /v1/jobs answered ${created.status}: ${created.text}`);
  let job = created.body as JobStatus;
  while (!['completed', 'failed', 'cancelled'].includes(job.state)) {
    await sleep(1000);
    job = (await service.http().get(`/v1/jobs/${job.id}`)).body as JobStatus;
  }
  if (job.state !== 'completed') throw new Error(`job ${JSON.stringify(spec)} ended ${job.state}: ${JSON.stringify(job.failure)}`);
  return job;
}

/** Trains the backbone the sweep transfers from: every layer from random weights on the upstream classes. */
async function trainUpstream(service: TestService) {
  const images = Number(values['upstream-images']);
  await writeFashionMnistFolder(path.join(service.config.DATA_DIR, 'upstream'), images, { classes: UPSTREAM_CLASSES });
  const started = Date.now();
  const job = await runJob(service, {
    name: 'bench upstream',
    mode: 'fine_tuning',
    weights: 'random',
    inputSize: 32,
    epochs: Number(values['upstream-epochs']),
    dataset: { type: 'folder', path: 'upstream' },
    fineTuning: { trainableFrom: 'conv1', freezeBatchNorm: false },
    augmentation: { randomResizedCrop: false, horizontalFlip: true },
  });
  return {
    job: job.id,
    classes: UPSTREAM_CLASSES,
    images,
    epochs: Number(values['upstream-epochs']),
    validationAccuracy: job.latestMetrics?.validationAccuracy ?? null,
    wallSeconds: Math.round((Date.now() - started) / 100) / 10,
  };
}

async function main() {
  if (!existsSync(FASHION_MNIST)) return { unavailable: 'apt-get install dataset-fashion-mnist' };
  // No int8 check after each trial: it adds the same seconds to every trial of both sweeps.
  const service = await startService('bench-sweep', { SWEEP_TICK_MS: '500', LOG_LEVEL: 'warn', INT8_CALIBRATION_IMAGES: '0' });
  try {
    mkdirSync(service.config.DATA_DIR, { recursive: true });
    const fromRandom = values.weights === 'random';
    // Photos from 30,000 on: none of the upstream job's.
    await writeFashionMnistFolder(path.join(service.config.DATA_DIR, 'fashion'), Number(values.images), {
      classes: fromRandom ? FASHION_MNIST_CLASSES : SWEEP_CLASSES,
      skip: fromRandom ? 0 : 30000,
    });
    await Promise.all([service.startWorker(), service.startWorker()]);
    const upstream = fromRandom ? null : await trainUpstream(service);
    const weights = upstream ? { job: upstream.job, checkpoint: 'final' } : 'random';
    // Without flips the trials share the CNN codes: one epoch of the base spec computes them first, so
    // neither sweep pays for them and the other not.
    if (values.augment !== 'true') await runJob(service, { ...spec(false, weights).base, name: 'bench codes', epochs: 1 });
    // The same 12 draws (same seed) both times.
    const withAsha = await run(service, true, weights);
    const toTheEnd = await run(service, false, weights);
    return {
      setup: {
        trials,
        maxEpochs,
        upstream,
        classes: fromRandom ? FASHION_MNIST_CLASSES : SWEEP_CLASSES,
        images: Number(values.images),
        inputSize: 32,
        horizontalFlip: values.augment === 'true',
        workers: 2,
        parallelism: 2,
        rungs: `ASHA at epochs ${rungs.join(', ')}, reduction factor ${asha.reductionFactor}, ${asha.brackets} bracket(s)`,
      },
      asha: withAsha,
      toTheEnd,
      ratios: {
        wallTime: Math.round((withAsha.wallSeconds / toTheEnd.wallSeconds) * 100) / 100,
        epochs: Math.round((withAsha.epochsTrained / toTheEnd.epochsTrained) * 100) / 100,
        bestAccuracyDifference:
          withAsha.bestValidationAccuracy !== null && toTheEnd.bestValidationAccuracy !== null
            ? Math.round((toTheEnd.bestValidationAccuracy - withAsha.bestValidationAccuracy) * 10000) / 10000
            : null,
      },
    };
  } finally {
    await service.stop();
  }
}

process.stdout.write(`${JSON.stringify(await main(), null, 2)}\n`);
process.exit(0);
