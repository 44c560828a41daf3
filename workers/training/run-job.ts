import { readFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import type { Config } from '../../schemas/config.js';
import { isTrainingSpec, type JobSpec, type TrainingJobSpec } from '../../schemas/job-spec.js';
import type { EpochMetrics, Metrics, Phase, WorkerProgress } from '../../schemas/job-status.js';
import { jobKeys, type ArtifactStore } from '../../services/artifacts/artifact-store.js';
import type { TrainingResult } from '../../services/queue/queues.js';
import type { BackendInfo } from '../engine/backend.js';
import { resolveDataset, ImageLoader } from '../data/datasets.js';
import { stratifiedSplit, type LabelledImage } from '../data/image-folder.js';
import { preflight, withoutBadFiles } from '../data/preflight.js';
import { preprocessingFor } from '../data/preprocess.js';
import { mixSeed, seededRandom, shuffled } from '../data/random.js';
import { loadWeightsInto, saveModel } from '../model/checkpoint-io.js';
import { buildResNet50, FEATURE_DIM, IMAGENET_CLASSES, type ResNet50 } from '../model/resnet50.js';
import { summarize } from '../model/summary.js';
import { exportTorchvisionWeights, importTorchvisionWeights } from '../model/torchvision-weights.js';
import { loadImageNetClassNames } from '../model/imagenet-classes.js';
import { classificationReport, scoreProbabilities, topIndices } from './classification-report.js';
import { bestEpochOf, classWeightsFor, learningRateAt, setLearningRate, shouldStop } from './controls.js';
import { featureCacheKey, featureCodes, headOnCodes, weightsFingerprint } from './feature-cache.js';
import { trainStep, wasmMicroBatchSize } from './train-step.js';

export interface JobContext {
  jobId: string;
  spec: JobSpec;
  config: Config;
  store: ArtifactStore;
  backend: BackendInfo;
  report(progress: WorkerProgress): Promise<void>;
  /** Checked at every step boundary; true stops the job as cancelled. */
  cancelRequested(): Promise<boolean>;
  log(message: string): void;
  /** feature_extraction computes CNN codes once (default); false runs the frozen backbone every step. */
  useFeatureCache?: boolean;
}

/** The job's spec cannot succeed as given: retrying would fail the same way. */
export class InvalidJobError extends Error {}
export class JobCancelledError extends Error {
  constructor() {
    super('cancelled by request');
  }
}

const PREDICTIONS_KEPT = 32;
const PROGRESS_INTERVAL_MS = 1000;

export function imageNetWeightsMissingMessage(file: string): string {
  return (
    `ImageNet weights not found at ${file}. Put torchvision's ResNet-50 weights there as safetensors with ` +
    `torchvision tensor names (for example the resnet50.tv_in1k model.safetensors, which is torchvision's ` +
    `IMAGENET1K_V1), or point IMAGENET_WEIGHTS at the file; or submit the job with "weights": "random".`
  );
}

async function readImageNetWeights(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new InvalidJobError(imageNetWeightsMissingMessage(file));
    throw error;
  }
}

function makeOptimizer(spec: TrainingJobSpec): tf.Optimizer {
  const { type, learningRate, momentum } = spec.optimizer;
  if (type === 'adam') return tf.train.adam(learningRate, 0.9, 0.999, 1e-8); // torch.optim.Adam's defaults
  return momentum > 0 ? tf.train.momentum(learningRate, momentum) : tf.train.sgd(learningRate);
}

interface CheckpointState {
  epoch: number;
  history: EpochMetrics[];
  optimizerWeights: tf.io.WeightsManifestEntry[];
}

/** Tracks phase, steps and ETA, and reports at most once a second (and at every phase change). */
class ProgressReporter {
  private lastReport = 0;
  private readonly startedAt = Date.now();
  private stepsDoneAtStart = -1;
  progress: WorkerProgress;

  constructor(private readonly ctx: JobContext, totalEpochs: number, totalSteps: number) {
    this.progress = {
      phase: 'loading_data', epoch: 0, totalEpochs, step: 0, totalSteps, percent: 0, etaSeconds: null,
      latestMetrics: null, backend: ctx.backend, skippedFiles: [],
    };
  }

  async update(change: Partial<WorkerProgress>, force = false): Promise<void> {
    const phaseChanged = change.phase !== undefined && change.phase !== this.progress.phase;
    Object.assign(this.progress, change);
    const { epoch, totalEpochs, step, totalSteps } = this.progress;
    const done = Math.max(0, epoch - 1) * totalSteps + step;
    if (this.stepsDoneAtStart < 0 && done > 0) this.stepsDoneAtStart = done - 1;
    const all = Math.max(1, totalEpochs * totalSteps);
    this.progress.percent = Math.min(100, Math.round((1000 * done) / all) / 10);
    const stepsThisRun = done - Math.max(this.stepsDoneAtStart, 0);
    this.progress.etaSeconds =
      stepsThisRun > 0 ? Math.round((((Date.now() - this.startedAt) / 1000) * (all - done)) / stepsThisRun) : null;
    if (force || phaseChanged || Date.now() - this.lastReport >= PROGRESS_INTERVAL_MS) {
      this.lastReport = Date.now();
      await this.ctx.report({ ...this.progress });
    }
  }

  phase(phase: Phase) {
    return this.update({ phase }, true);
  }
}

/** Class probabilities for every image, and their scores where the images are labelled. */
type BatchSource = (images: readonly LabelledImage[]) => Promise<tf.Tensor>;

async function evaluate(model: tf.LayersModel, inputs: BatchSource, images: readonly LabelledImage[], batchSize: number, labelled: boolean) {
  const probabilities: Float32Array[] = [];
  for (let i = 0; i < images.length; i += batchSize) {
    const batch = images.slice(i, i + batchSize);
    const x = await inputs(batch);
    const probs = tf.tidy(() => tf.softmax(model.predict(x) as tf.Tensor2D).dataSync() as Float32Array);
    x.dispose();
    const classes = probs.length / batch.length;
    for (let j = 0; j < batch.length; j++) probabilities.push(probs.slice(j * classes, (j + 1) * classes));
  }
  const scores = labelled && images.length ? scoreProbabilities(probabilities, images.map((image) => image.label)) : null;
  return { scores, probabilities };
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;

/**
 * The job, start to end: parse -> load data -> build model -> train (progress, cancel check and
 * checkpoint per epoch, resuming from the latest one) -> write the final model, summary, metrics.
 */
export async function runJob(ctx: JobContext): Promise<TrainingResult> {
  const { spec, store, config } = ctx;
  const keys = jobKeys(ctx.jobId);
  const training = isTrainingSpec(spec);
  const totalEpochs = training ? spec.epochs : 0;
  const reporter = new ProgressReporter(ctx, totalEpochs, 0);
  await reporter.phase('loading_data');

  const found = await resolveDataset(spec.dataset, config.DATA_DIR).catch((error: Error) => {
    throw new InvalidJobError(error.message);
  });
  // Unusable files are skipped and listed, not discovered hours in.
  const report = await preflight(found, { validationSplit: training ? spec.validationSplit : 0, seed: spec.seed, minImagesPerClass: 1 });
  await store.write(keys.preflight, JSON.stringify(report));
  if (report.bad.length) {
    ctx.log(`skipping ${report.bad.length} unusable file(s): ${report.bad.map((b) => `${b.file} (${b.reason})`).join(', ')}`);
    await reporter.update({ skippedFiles: report.bad.map(({ file, reason }) => ({ file, reason })) }, true);
  }
  if (training && report.smallClasses.length) {
    throw new InvalidJobError(`class(es) with no usable image: ${report.smallClasses.join(', ')}`);
  }
  const dataset = withoutBadFiles(found, report);
  const preprocessing = preprocessingFor(spec.inputSize);
  const loader = new ImageLoader(dataset.root, preprocessing);
  const { train, validation } = training ? stratifiedSplit(dataset.images, spec.validationSplit, spec.seed) : { train: [], validation: dataset.images };
  const stepsPerEpoch = Math.ceil(train.length / spec.batchSize);
  reporter.progress.totalSteps = stepsPerEpoch;

  await reporter.phase('building_model');
  const numClasses = training ? dataset.classNames.length : IMAGENET_CLASSES;
  const resnet: ResNet50 = buildResNet50({
    mode: spec.mode, numClasses, inputSize: spec.inputSize, seed: spec.seed,
    fineTuning: spec.mode === 'fine_tuning' ? spec.fineTuning : undefined,
  });
  try {
    if (spec.weights === 'imagenet') {
      importTorchvisionWeights(resnet, await readImageNetWeights(config.IMAGENET_WEIGHTS), { scope: training ? 'backbone' : 'all' });
    }
    const summary = summarize(resnet);
    await store.write(keys.summary, JSON.stringify(summary));
    // A step through the whole network keeps every activation for the backward pass: on wasm, slice
    // the batch to fit the heap. A head trained on CNN codes needs no slicing.
    const fullNetworkMicroBatch =
      ctx.backend.choice === 'wasm' ? wasmMicroBatchSize(summary.totals.forwardBackwardPassBytes, summary.totals.paramsBytes) : spec.batchSize;
    const classNames = training ? dataset.classNames : await loadImageNetClassNames();
    const metadata = { classNames, preprocessing, spec, mode: spec.mode, inputSize: spec.inputSize, backend: ctx.backend };
    const metrics: Metrics = { classNames, epochs: [], evaluation: null, report: null, validationPredictions: [] };
    let resumedFromEpoch: number | null = null;

    if (training) {
      // Feature extraction trains the head on CNN codes computed once; fine-tuning runs the network.
      let trained = resnet.model;
      let inputs: BatchSource = (batch) => loader.batch(batch);
      const { augmentation } = spec;
      const augmenting = augmentation.randomResizedCrop || augmentation.horizontalFlip;
      if (spec.mode === 'feature_extraction' && !augmenting && ctx.useFeatureCache !== false) {
        await reporter.phase('extracting_features');
        const images = [...train, ...validation];
        const key = await featureCacheKey({
          root: dataset.root, images, preprocessing, backend: ctx.backend.choice,
          weights: spec.weights === 'imagenet' ? await weightsFingerprint(config.IMAGENET_WEIGHTS) : `random:${spec.seed}`,
        });
        const extracted = await featureCodes(store, key, resnet, loader, images, spec.batchSize, async (done) => {
          if (await ctx.cancelRequested()) throw new JobCancelledError();
          ctx.log(`extracted CNN codes of ${done} of ${images.length} images`);
        });
        metrics.featureCache = { key, hit: extracted.cacheHit, backboneImages: extracted.backboneImages };
        trained = headOnCodes(resnet);
        inputs = async (batch) => tf.tensor2d(concatCodes(batch.map((image) => extracted.codes.get(image.file)!)), [batch.length, FEATURE_DIM]);
      }
      const optimizer = makeOptimizer(spec);
      let classWeights: number[] | null;
      try {
        classWeights = classWeightsFor(spec, train.map((image) => image.label), numClasses);
      } catch (error) {
        throw new InvalidJobError((error as Error).message);
      }
      const monitor = spec.earlyStopping?.monitor ?? 'validation_loss';
      const resumed = await resumeFromLatestCheckpoint(store, keys, resnet, optimizer);
      if (resumed) {
        metrics.epochs = resumed.history;
        resumedFromEpoch = resumed.epoch;
        ctx.log(`resuming after epoch ${resumed.epoch}`);
      }
      const trainIndex = new Map(train.map((image, i) => [image.file, i]));
      for (let epoch = (resumed?.epoch ?? 0) + 1; epoch <= spec.epochs && !shouldStop(metrics.epochs, spec.earlyStopping); epoch++) {
        const started = Date.now();
        // Each image's crop and flip are a function of (seed, epoch, image): reproducible, resumable.
        const trainInputs: BatchSource = augmenting
          ? (batch) =>
              loader.batch(batch, (image) => ({
                ...augmentation, random: seededRandom(mixSeed(mixSeed(spec.seed, epoch), trainIndex.get(image.file)!)),
              }))
          : inputs;
        const learningRate = learningRateAt(spec, epoch);
        setLearningRate(optimizer, learningRate);
        const order = shuffled(train, mixSeed(spec.seed, epoch));
        let lossSum = 0;
        let correct = 0;
        await reporter.update({ phase: 'training', epoch, step: 0 }, true);
        for (let step = 0; step < stepsPerEpoch; step++) {
          if (await ctx.cancelRequested()) {
            ctx.log(`cancelled before epoch ${epoch} step ${step + 1}`);
            await reporter.update({ step }, true);
            throw new JobCancelledError();
          }
          const batch = order.slice(step * spec.batchSize, (step + 1) * spec.batchSize);
          const x = await trainInputs(batch);
          const y = tf.oneHot(tf.tensor1d(batch.map((b) => b.label), 'int32'), numClasses) as tf.Tensor2D;
          const result = trainStep(trained, optimizer, x, y, {
            weightDecay: spec.optimizer.weightDecay,
            labelSmoothing: spec.labelSmoothing,
            sampleWeights: classWeights ? batch.map((b) => classWeights[b.label]) : undefined,
            microBatchSize: trained === resnet.model ? fullNetworkMicroBatch : spec.batchSize,
          });
          tf.dispose([x, y]);
          if (!Number.isFinite(result.loss)) throw new InvalidJobError(`training diverged: loss is ${result.loss} at epoch ${epoch}, step ${step + 1}; lower optimizer.learningRate`);
          lossSum += result.loss * batch.length;
          correct += result.correct;
          await reporter.update({ step: step + 1 });
        }
        await reporter.phase('validating');
        const { scores } = await evaluate(trained, inputs, validation, spec.batchSize, true);
        const epochMetrics: EpochMetrics = {
          epoch,
          trainLoss: round(lossSum / train.length),
          trainAccuracy: round(correct / train.length),
          validationLoss: scores ? round(scores.loss) : null,
          validationAccuracy: scores ? round(scores.top1) : null,
          validationTop5Accuracy: scores ? round(scores.top5) : null,
          learningRate,
          seconds: round((Date.now() - started) / 1000),
        };
        metrics.epochs.push(epochMetrics);
        metrics.bestEpoch = bestEpochOf(metrics.epochs, monitor, spec.earlyStopping?.minDelta)?.epoch ?? null;
        await reporter.phase('saving');
        await writeCheckpoint(store, keys.checkpoint(epoch), resnet, optimizer, { epoch, history: metrics.epochs }, metadata);
        await store.write(keys.metrics, JSON.stringify(metrics));
        await reporter.update({ latestMetrics: epochMetrics }, true);
      }
      const last = metrics.epochs.at(-1)?.epoch ?? 0;
      if (spec.earlyStopping && last < spec.epochs) {
        metrics.earlyStopping = { stoppedAfterEpoch: last, bestEpoch: metrics.bestEpoch ?? last, monitor };
        ctx.log(`early stopping after epoch ${last}: best was epoch ${metrics.bestEpoch}`);
      }
      // With early stopping the final model is the best epoch's (as Keras' restore_best_weights).
      if (spec.earlyStopping && metrics.bestEpoch && metrics.bestEpoch !== last) {
        await loadWeightsInto(resnet, store, keys.checkpoint(metrics.bestEpoch));
      }
      const final = await evaluate(trained, inputs, validation, spec.batchSize, true);
      metrics.evaluation = {
        split: 'validation', loss: final.scores?.loss ?? null, accuracy: final.scores?.top1 ?? null,
        top5Accuracy: final.scores?.top5 ?? null, images: validation.length,
      };
      metrics.validationPredictions = predictionsOf(validation, final.probabilities);
      metrics.report = classificationReport(classNames, validation.map((v) => v.label), final.probabilities.map((p) => topIndices(p, 1)[0]));
      await store.write(keys.metrics, JSON.stringify(metrics));
      optimizer.dispose();
    } else {
      await reporter.phase('evaluating');
      const known = new Map(classNames.map((name, i) => [name, i]));
      const labelled = dataset.classNames.every((name) => known.has(name));
      const images = labelled ? dataset.images.map((image) => ({ ...image, label: known.get(dataset.classNames[image.label])! })) : dataset.images;
      const evaluation = await evaluate(resnet.model, (batch) => loader.batch(batch), images, spec.batchSize, labelled);
      metrics.evaluation = {
        split: 'all', loss: evaluation.scores?.loss ?? null, accuracy: evaluation.scores?.top1 ?? null,
        top5Accuracy: evaluation.scores?.top5 ?? null, images: images.length,
      };
      metrics.validationPredictions = predictionsOf(images, evaluation.probabilities);
      await store.write(keys.metrics, JSON.stringify(metrics));
    }

    await reporter.phase('saving');
    await saveModel(resnet, store, keys.final);
    await store.write(`${keys.final}/model.safetensors`, exportTorchvisionWeights(resnet));
    await store.write(`${keys.final}/metadata.json`, JSON.stringify({ ...metadata, epochs: metrics.epochs.length }));
    await reporter.update({ phase: 'done', percent: 100, etaSeconds: 0 }, true);
    return {
      epochsCompleted: metrics.epochs.length,
      resumedFromEpoch,
      validationAccuracy: metrics.evaluation?.accuracy ?? null,
      artifacts: keys.root,
    };
  } finally {
    resnet.model.dispose();
  }
}

function concatCodes(rows: Float32Array[]): Float32Array {
  const out = new Float32Array(rows.length * FEATURE_DIM);
  rows.forEach((row, i) => out.set(row, i * FEATURE_DIM));
  return out;
}

function predictionsOf(images: readonly LabelledImage[], probabilities: Float32Array[]) {
  return images.slice(0, PREDICTIONS_KEPT).map((image, i) => ({
    file: image.file,
    label: image.label,
    probabilities: Array.from(probabilities[i]),
  }));
}

async function writeCheckpoint(
  store: ArtifactStore,
  prefix: string,
  resnet: ResNet50,
  optimizer: tf.Optimizer,
  state: Omit<CheckpointState, 'optimizerWeights'>,
  metadata: object,
): Promise<void> {
  const { data, specs } = await tf.io.encodeWeights(await optimizer.getWeights());
  await saveModel(resnet, store, prefix);
  await store.write(`${prefix}/optimizer.bin`, new Uint8Array(tf.io.CompositeArrayBuffer.join(data)));
  await store.write(`${prefix}/metadata.json`, JSON.stringify({ ...metadata, epoch: state.epoch }));
  // Written last: a checkpoint counts only once its state.json exists.
  await store.write(`${prefix}/state.json`, JSON.stringify({ ...state, optimizerWeights: specs } satisfies CheckpointState));
}

/** Loads the newest complete checkpoint (weights, optimiser state, metrics history), if any. */
async function resumeFromLatestCheckpoint(
  store: ArtifactStore,
  keys: ReturnType<typeof jobKeys>,
  resnet: ResNet50,
  optimizer: tf.Optimizer,
): Promise<CheckpointState | null> {
  for (const name of (await store.list(keys.checkpoints)).reverse()) {
    const prefix = `${keys.checkpoints}/${name}`;
    if (!(await store.stat(`${prefix}/state.json`))) continue;
    const state = JSON.parse((await store.read(`${prefix}/state.json`)).toString('utf8')) as CheckpointState;
    await loadWeightsInto(resnet, store, prefix);
    const bytes = await store.read(`${prefix}/optimizer.bin`);
    const named = tf.io.decodeWeights(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer, state.optimizerWeights);
    await optimizer.setWeights(state.optimizerWeights.map((spec) => ({ name: spec.name, tensor: named[spec.name] })));
    return state;
  }
  return null;
}
