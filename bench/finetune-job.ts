// One fine-tuning job through the worker's runJob, in a process of its own so its peak RSS is the job's:
// node --import tsx bench/finetune-job.ts --data DIR --folder NAME --size 32 --epochs 2
// [--weights FILE: start weights, a torch.save state_dict of torchvision's resnet50, stored as a variant first]
// [--test NAME: a folder of the same classes under --data the final model is scored on after the job, in fp32]
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
import * as tf from '../engine/tf.js';
import type { JobArtifacts } from '../common/job-artifacts.js';
import { readImageFolder } from '../common/image-folder.js';
import { loadModel } from '../engine/model/checkpoint-io.js';
import { freeze } from '../engine/model/resnet50.js';
import { frozenCodes } from '../engine/model/fused-backbone.js';
import { useConvolutionPrecision } from '../engine/native/kernels/register.js';
import { ImageLoader } from '../engine/data/datasets.js';

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
    'learning-rate': { type: 'string', default: '0.001' },
    weights: { type: 'string' },
    test: { type: 'string' },
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
const BATCH = 16;

/** The job's final model's top-1 accuracy on the images under `root` (class folders named as the job's), in fp32 as the API predicts. */
async function testAccuracy(artifacts: JobArtifacts, root: string): Promise<{ testImages: number; testAccuracy: number }> {
  const { finalFolder } = artifacts;
  const metadata = await artifacts.readModelMetadata(finalFolder);
  if (!metadata) throw new Error('the job saved no final model');
  const folder = await readImageFolder(root);
  if (folder.classNames.join() !== metadata.classNames.join())
    throw new Error(`--test has classes ${folder.classNames}, the model ${metadata.classNames}`);
  const { store, prefix } = artifacts.modelLocation(finalFolder);
  const resnet = await loadModel(store, prefix);
  freeze(resnet);
  const backbone = frozenCodes(resnet, useConvolutionPrecision('fp32'));
  // Each photo is decoded once: nothing to keep.
  const loader = new ImageLoader(root, metadata.preprocessing, 0);
  let correct = 0;
  for (let start = 0; start < folder.images.length; start += BATCH) {
    const slice = folder.images.slice(start, start + BATCH);
    const x = await loader.batch(slice);
    const top = tf.tidy(() => tf.argMax(resnet.classify(backbone.codes(x)), 1).dataSync());
    x.dispose();
    correct += slice.filter((image, i) => top[i] === image.label).length;
  }
  resnet.dispose();
  return { testImages: folder.images.length, testAccuracy: correct / folder.images.length };
}
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
  // As the PyTorch script: random weights (or --weights), no augmentation, BatchNorm frozen, Adam (1e-3 unless --learning-rate), 20% validation.
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
    optimizer: { type: 'adam', learningRate: Number(values['learning-rate']) },
    seed: Number(values.seed),
  });
  const started = performance.now();
  const { artifacts, precision } = await runQuietJob('bench-job', spec, config, backend);
  const jobSeconds = (performance.now() - started) / 1000;
  const metrics = await artifacts.readMetrics();
  const test = values.test && (await testAccuracy(artifacts, path.join(values.data, values.test)));
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
      ...test,
    })}\n`,
  );
} finally {
  rmSync(artifactsDir, { recursive: true, force: true });
}
