// One fine-tuning job through the worker's runJob, in a process of its own so its peak RSS is the job's:
// node --import tsx bench/finetune-job.ts --data DIR --folder NAME --size 32 --epochs 2
// [--weights FILE: start weights, a torch.save state_dict of torchvision's resnet50, stored as a variant first]
// Prints one JSON object: seconds of every epoch and of the whole job, final validation accuracy, the int8 check, peak RSS.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { selectBackend } from '../engine/backend/backend.js';
import { openArtifactStore } from '../common/open-artifact-store.js';
import { WeightsStore } from '../common/weights-store.js';
import { storeVariant } from '../engine/model/weight-variants.js';
import { loadConfig } from '../schemas/config.js';
import { JobSpec } from '../schemas/job-spec.js';
import { DEFAULT_TRANSFORM } from '../schemas/weights.js';
import { runQuietJob } from './quiet-job.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string' },
    folder: { type: 'string' },
    size: { type: 'string' },
    epochs: { type: 'string', default: '2' },
    batch: { type: 'string', default: '16' },
    precision: { type: 'string', default: 'fp32' },
    'trainable-from': { type: 'string', default: 'conv1' },
    seed: { type: 'string', default: '0' },
    weights: { type: 'string' },
  },
});
if (!values.data || !values.folder || !values.size) throw new Error('--data, --folder and --size are required');

/**
 * This process's own peak RSS (VmHWM). Not getrusage's maxRSS: Linux carries that across exec from the
 * address space it replaces, so a child spawned by the bench reported the bench's own peak when larger.
 */
function peakRssMiB(): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  if (!match) throw new Error('no VmHWM in /proc/self/status');
  return Number(match[1]) / 1024;
}
const START_WEIGHTS = 'start';
const artifactsDir = mkdtempSync(path.join(os.tmpdir(), 'retrain-job-'));
try {
  const config = loadConfig({ ...process.env, DATA_DIR: values.data, ARTIFACTS_DIR: artifactsDir });
  const backend = await selectBackend('wasm', { nativeKernels: config.RETRAIN_NATIVE_KERNELS });
  if (values.weights) {
    const file = readFileSync(values.weights);
    await storeVariant(new WeightsStore(await openArtifactStore(config)), file, {
      name: START_WEIGHTS,
      source: path.basename(values.weights),
      sourceSha256: createHash('sha256').update(file).digest('hex'),
      transform: DEFAULT_TRANSFORM,
      top1: null,
    });
  }
  // As the PyTorch script: random weights (or --weights), no augmentation, BatchNorm frozen, Adam(1e-3), 20% validation.
  const spec = JobSpec.parse({
    mode: 'fine_tuning',
    weights: values.weights ? START_WEIGHTS : 'random',
    inputSize: Number(values.size),
    epochs: Number(values.epochs),
    batchSize: Number(values.batch),
    augmentation: { randomResizedCrop: false, horizontalFlip: false },
    dataset: { type: 'folder', path: values.folder },
    precision: values.precision,
    fineTuning: { trainableFrom: values['trainable-from'] },
    seed: Number(values.seed),
  });
  const started = performance.now();
  const { artifacts, precision } = await runQuietJob('bench-job', spec, config, backend);
  const jobSeconds = (performance.now() - started) / 1000;
  const metrics = await artifacts.readMetrics();
  process.stdout.write(
    `${JSON.stringify({
      engine: 'retrain',
      kernels: backend.kernels,
      precision,
      inputSize: spec.inputSize,
      trainableFrom: values['trainable-from'],
      epochSeconds: metrics?.epochs.map((epoch) => epoch.seconds) ?? [],
      jobSeconds,
      frozenStages: metrics?.frozenStages ?? null,
      validationAccuracy: metrics?.epochs.at(-1)?.validationAccuracy ?? null,
      epochValidationAccuracy: metrics?.epochs.map((epoch) => epoch.validationAccuracy) ?? [],
      epochTrainingLoss: metrics?.epochs.map((epoch) => epoch.trainLoss) ?? [],
      int8: metrics?.int8 ?? null,
      peakRssMiB: peakRssMiB(),
    })}\n`,
  );
} finally {
  rmSync(artifactsDir, { recursive: true, force: true });
}
