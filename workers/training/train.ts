import { cachePolicyOf } from '../../common/cache-eviction.js';
import { Dropout } from '../../engine/model/dropout.js';
import * as tf from '../../engine/tf.js';
import type { LabelledImage } from '../../common/image-folder.js';
import type { EpochPosition } from '../../schemas/artifacts.js';
import type { TrainingJobSpec } from '../../schemas/job-spec.js';
import { Stage, type Precision } from '../../schemas/model.js';
import { emptyMetrics, type EpochMetrics, type Metrics } from '../../schemas/metrics.js';
import { mixSeed, seededRandom, shuffled } from '../../common/random.js';
import { classificationReport, topIndices } from '../../engine/training/classification-report.js';
import { bestEpochOf, classWeightsFor, learningRateAt, setLearningRate, shouldStop } from '../../engine/training/controls.js';
import { FusedAdamOptimizer } from '../../engine/training/adam.js';
import { trainStep, wasmMicroBatchSize } from '../../engine/training/train-step.js';
import type { Network } from '../../engine/model/network.js';
import type { JobModel } from './build-model.js';
import {
  checkpointBytes,
  pruneCheckpoints,
  restoreEpochWeights,
  resumeFromLatestCheckpoint,
  writeCheckpoint,
  writeInterruptedCheckpoint,
} from './checkpoints.js';
import { evaluate, evaluationOf, predictionsOf, round, writeValidationThumbnails, type BatchSource } from './evaluate.js';
import { codeBatches, featureCacheKey, featureCodes, headOnCodes, liveCodes } from './feature-cache.js';
import { frozenStageOutputs } from './frozen-stages.js';
import { frozenCodes, frozenStages } from '../../engine/model/fused-backbone.js';
import { InvalidJobError, JobCancelledError, JobHandedBackError, type JobContext } from './job-context.js';
import { datasetOf, type JobData } from './load-data.js';
import type { ProgressReporter } from './progress-reporter.js';

export interface Outcome {
  metrics: Metrics;
  resumedFromEpoch: number | null;
  /** A sweep's ASHA stopped the trial after this epoch. */
  stoppedEarlyAfterEpoch?: number;
}

/** What trains and on which inputs: the whole network on pixels, or the head alone on cached CNN codes. */
interface TrainingRun {
  spec: TrainingJobSpec;
  network: Network;
  /** Unaugmented: validation, and training when nothing augments. */
  inputs: BatchSource;
  trainInputs(epoch: number): BatchSource;
  microBatchSize: number;
  numClasses: number;
  classWeights: number[] | null;
}

const optimizerFor = ({ optimizer }: TrainingJobSpec): tf.Optimizer =>
  optimizer.type === 'adam'
    ? new FusedAdamOptimizer(optimizer.learningRate, 0.9, 0.999, 1e-8) // torch.optim.Adam's defaults
    : optimizer.momentum > 0
      ? tf.train.momentum(optimizer.learningRate, optimizer.momentum)
      : tf.train.sgd(optimizer.learningRate);

/**
 * Trains epoch by epoch from the latest checkpoint, if any (each epoch: steps, validation, checkpoint),
 * stops early if asked, then evaluates the final model on the validation split.
 */
export async function train(
  ctx: JobContext,
  spec: TrainingJobSpec,
  model: JobModel,
  data: JobData,
  reporter: ProgressReporter,
): Promise<Outcome> {
  const metrics = { ...emptyMetrics(model.classNames), weights: model.weights, dataset: datasetOf(ctx.spec, data) };
  // What the convolutions read: runJob always says.
  const precision = ctx.backend.precision ?? 'fp32';
  const run = await prepareRun({ ctx, spec, model, data, reporter, precision }, metrics);
  const optimizer = optimizerFor(spec);
  try {
    const resumed = await resumeFromLatestCheckpoint(ctx.artifacts, model.resnet, optimizer);
    const monitor = spec.earlyStopping?.monitor ?? ctx.sweepObjective ?? 'validation_loss';
    const bestEpochSoFar = () => bestEpochOf(metrics.epochs, monitor, spec.earlyStopping?.minDelta)?.epoch ?? null;
    if (resumed) {
      metrics.epochs = resumed.history;
      // Resumed after the last epoch, no epoch below sets it: the final model is still the best epoch's.
      metrics.bestEpoch = bestEpochSoFar();
      const inside = resumed.position ? `, inside epoch ${resumed.epoch + 1} after step ${resumed.position.stepsDone}` : '';
      ctx.log(
        `resuming after epoch ${resumed.epoch}${inside}${resumed.trainingDone ? ', its training done (the final model was saved)' : ''}`,
      );
    }
    // A trial resumed after its rung's decision (its worker died after asking) stops as decided.
    let stoppedBySweep = metrics.epochs.length > 0 && (await ctx.reportToSweep?.(metrics.epochs)) === true;
    for (
      let epoch = (resumed?.epoch ?? 0) + 1;
      epoch <= spec.epochs && !resumed?.trainingDone && !stoppedBySweep && !shouldStop(metrics.epochs, spec.earlyStopping);
      epoch++
    ) {
      const started = Date.now();
      const position = epoch === (resumed?.epoch ?? 0) + 1 ? (resumed?.position ?? null) : null;
      const learningRate = learningRateAt(spec, epoch);
      setLearningRate(optimizer, learningRate);
      const plan = planEpoch(ctx, model, optimizer, metrics, reporter, epoch, position);
      const epochTraining = await trainEpoch(ctx, run, optimizer, data.train, plan, reporter);
      await reporter.phase('validating');
      const { scores } = await evaluate(run.network, run.inputs, data.validation, spec.batchSize, true);
      const epochMetrics = epochMetricsOf(epoch, epochTraining, scores, { learningRate, started });
      metrics.epochs.push(epochMetrics);
      metrics.bestEpoch = bestEpochSoFar();
      await reporter.phase('saving');
      await ctx.ensureArtifactRoom(checkpointBytes(model), `epoch ${epoch}'s checkpoint`);
      await writeCheckpoint(ctx.artifacts, model, optimizer, { epoch, history: metrics.epochs }, model.metadata);
      await ctx.artifacts.writeMetrics(metrics);
      await pruneCheckpoints(ctx.artifacts, { latest: epoch, best: metrics.bestEpoch, keepEveryN: spec.checkpoints.keepEveryN });
      if (position) await ctx.artifacts.removeInterrupted();
      await ctx.measureArtifacts();
      await reporter.epochEnded(epochMetrics);
      ctx.log(`epoch ${epoch}/${spec.epochs}`, { ...epochMetrics });
      stoppedBySweep = (await ctx.reportToSweep?.(metrics.epochs)) === true;
      if (stoppedBySweep) ctx.log(`the sweep's ASHA stops this trial after epoch ${epoch}`);
    }
    await finishTraining(ctx, run, model, data, metrics);
    const last = metrics.epochs.at(-1)?.epoch;
    return { metrics, resumedFromEpoch: resumed?.epoch ?? null, ...(stoppedBySweep && last ? { stoppedEarlyAfterEpoch: last } : {}) };
  } finally {
    optimizer.dispose();
  }
}

function epochMetricsOf(
  epoch: number,
  training: { loss: number; accuracy: number },
  scores: { loss: number; top1: number; top5: number } | null,
  { learningRate, started }: { learningRate: number; started: number },
): EpochMetrics {
  return {
    epoch,
    trainLoss: round(training.loss),
    trainAccuracy: round(training.accuracy),
    validationLoss: scores ? round(scores.loss) : null,
    validationAccuracy: scores ? round(scores.top1) : null,
    validationTop5Accuracy: scores ? round(scores.top5) : null,
    learningRate,
    seconds: round((Date.now() - started) / 1000),
  };
}

/** What preparing a run works with: the job's context and spec, its model and data, and where it reports. */
interface RunParts {
  ctx: JobContext;
  spec: TrainingJobSpec;
  model: JobModel;
  data: JobData;
  reporter: ProgressReporter;
  precision: Precision;
}

async function prepareRun(parts: RunParts, metrics: Metrics): Promise<TrainingRun> {
  const { ctx, spec, model, data, precision } = parts;
  const numClasses = model.classNames.length;
  let classWeights: number[] | null;
  try {
    classWeights = classWeightsFor(
      spec,
      data.train.map((image) => image.label),
      numClasses,
    );
  } catch (error) {
    throw new InvalidJobError((error as Error).message);
  }
  metrics.classWeights = classWeights;
  const { augmentation } = spec;
  const augmenting = augmentation.randomResizedCrop || augmentation.horizontalFlip;
  const pixels: BatchSource = (batch) => data.loader.batch(batch);
  const trainIndex = new Map(data.train.map((image, i) => [image.file, i]));
  // Each image's crop and flip are a function of (seed, epoch, image): reproducible, resumable.
  const augmented =
    (epoch: number): BatchSource =>
    (batch) =>
      data.loader.batch(batch, (image) => ({
        ...augmentation,
        random: seededRandom(mixSeed(mixSeed(spec.seed, epoch), trainIndex.get(image.file) ?? 0)),
      }));
  if (spec.mode === 'feature_extraction') {
    // The frozen backbone runs forward only, in inference mode: from cached codes, or on every batch
    // when augmentation makes each epoch's crops new. Only the head trains, on the codes.
    const head = { spec, network: headOnCodes(model.resnet), microBatchSize: spec.batchSize, numClasses, classWeights };
    if (!augmenting && ctx.config.FEATURE_CACHE) {
      const inputs = await cachedCodeInputs(parts, metrics);
      return { ...head, inputs, trainInputs: () => inputs };
    }
    const codes = liveCodes(frozenCodes(model.resnet, precision));
    return { ...head, inputs: codes(pixels), trainInputs: augmenting ? (epoch) => codes(augmented(epoch)) : () => codes(pixels) };
  }
  // A step through the whole network keeps every activation for the backward pass: on wasm, slice
  // the batch to fit the heap.
  const { totals } = model.summary;
  const microBatchSize =
    ctx.backend.choice === 'wasm'
      ? wasmMicroBatchSize(totals.forwardBackwardPassBytes, totals.paramsBytes, !spec.fineTuning.freezeBatchNorm)
      : spec.batchSize;
  const whole = { spec, microBatchSize, numClasses, classWeights };
  const stage = Stage.options.indexOf(spec.fineTuning.trainableFrom);
  if (!augmenting && stage > 0) {
    const reused = await frozenStageInputs(parts, spec.fineTuning.trainableFrom, metrics);
    if (reused) return { ...whole, network: model.resnet.networkFrom(stage), inputs: reused, trainInputs: () => reused };
  }
  return { ...whole, network: model.resnet.network, inputs: pixels, trainInputs: augmenting ? augmented : () => pixels };
}

/** fine_tuning without augmentation above conv1: the frozen stages run once per image while their output fits. */
async function frozenStageInputs(
  { ctx, spec, model, data, reporter, precision }: RunParts,
  trainableFrom: Stage,
  metrics: Metrics,
): Promise<BatchSource | null> {
  if (!ctx.config.FEATURE_CACHE) {
    metrics.frozenStages = { stage: trainableFrom, reused: false, imagesComputed: 0, bytes: 0, reason: 'FEATURE_CACHE=0' };
    return null;
  }
  await reporter.phase('extracting_features');
  const images = [...data.train, ...data.validation];
  const { inputs, use } = await frozenStageOutputs({
    frozen: frozenStages(model.resnet, Stage.options.indexOf(trainableFrom), precision),
    loader: data.loader,
    images,
    batchSize: spec.batchSize,
    maxBytes: ctx.config.FEATURE_CACHE_MAX_BYTES,
    bfloat16: precision === 'bf16',
    onBatch: async (done) => {
      if (await ctx.cancelRequested()) throw new JobCancelledError();
      ctx.log(`ran the frozen stages before ${trainableFrom} on ${done} of ${images.length} images`);
    },
  });
  metrics.frozenStages = { stage: trainableFrom, ...use };
  if (!inputs) ctx.log(`the frozen stages run every step: ${use.reason}`);
  return inputs;
}

/** feature_extraction without augmentation: the backbone runs once per image, here or in an earlier job. */
async function cachedCodeInputs({ ctx, spec, model, data, reporter, precision }: RunParts, metrics: Metrics): Promise<BatchSource> {
  await reporter.phase('extracting_features');
  const images = [...data.train, ...data.validation];
  const backbone = frozenCodes(model.resnet, precision);
  const key = await featureCacheKey({
    root: data.loader.root,
    images,
    preprocessing: data.preprocessing,
    // Codes differ by precision and engine (rounding); the eager fp32 keys stay what they were.
    backend: [ctx.backend.choice, ...(precision === 'bf16' ? ['bf16'] : []), ...(backbone.engine === 'fused' ? ['fused'] : [])].join(':'),
    weights: model.weightsFingerprint,
  });
  const onBatch = async (done: number) => {
    if (await ctx.cancelRequested()) throw new JobCancelledError();
    ctx.log(`extracted CNN codes of ${done} of ${images.length} images`);
  };
  const policy = cachePolicyOf(ctx.config);
  const extracted = await featureCodes(ctx.store, key, {
    backbone,
    loader: data.loader,
    images,
    batchSize: spec.batchSize,
    onBatch,
    policy,
  });
  metrics.featureCache = { key, hit: extracted.cacheHit, backboneImages: extracted.backboneImages };
  return codeBatches(extracted);
}

interface EpochPlan {
  epoch: number;
  /** Where an interrupted run of this epoch stopped: it goes on from there. */
  position: EpochPosition | null;
  /** Saves the epoch's state when the worker asks for the job back (between two steps). */
  stopAt: (position: Omit<EpochPosition, 'dropoutCalls'>) => Promise<void>;
}

/** Sets the dropout masks to the epoch's start (or where an interrupted run left them); says how to save the epoch mid-way. */
function planEpoch(
  ctx: JobContext,
  model: JobModel,
  optimizer: tf.Optimizer,
  metrics: Metrics,
  reporter: ProgressReporter,
  epoch: number,
  position: EpochPosition | null,
): EpochPlan {
  const dropouts = model.resnet.model.layers.filter((layer): layer is Dropout => layer instanceof Dropout);
  for (const layer of dropouts) {
    layer.startEpoch(epoch);
    if (position) layer.callCount = position.dropoutCalls[layer.name] ?? layer.callCount;
  }
  const stopAt = async (stopped: Omit<EpochPosition, 'dropoutCalls'>) => {
    const dropoutCalls = Object.fromEntries(dropouts.map((layer) => [layer.name, layer.callCount]));
    await reporter.phase('saving');
    await ctx.ensureArtifactRoom(checkpointBytes(model), `epoch ${epoch}'s interrupted checkpoint`);
    await writeInterruptedCheckpoint(ctx.artifacts, model, optimizer, {
      epoch,
      history: metrics.epochs,
      position: { ...stopped, dropoutCalls },
    });
    ctx.log(`handed back inside epoch ${epoch} after step ${stopped.stepsDone}`);
  };
  return { epoch, position, stopAt };
}

/**
 * One pass over the shuffled training images. Before every step: a worker that is stopping gets the
 * job back (saved after the last finished step), and the cancel flag is checked.
 */
async function trainEpoch(
  ctx: JobContext,
  run: TrainingRun,
  optimizer: tf.Optimizer,
  images: readonly LabelledImage[],
  { epoch, position, stopAt }: EpochPlan,
  reporter: ProgressReporter,
): Promise<{ loss: number; accuracy: number }> {
  const { spec } = run;
  const inputs = run.trainInputs(epoch);
  const order = shuffled(images, mixSeed(spec.seed, epoch));
  const steps = Math.ceil(order.length / spec.batchSize);
  let lossSum = position?.lossSum ?? 0;
  let correct = position?.correct ?? 0;
  const firstStep = position?.stepsDone ?? 0;
  await reporter.update({ phase: 'training', epoch, step: firstStep }, true);
  let lastPassedCheckAt: string | null = null;
  for (let step = firstStep; step < steps; step++) {
    if (ctx.handBackRequested()) {
      // Before the first step here the newest checkpoint (the last epoch's, or the interrupted one resumed) holds it all.
      if (step > firstStep) await stopAt({ stepsDone: step, lossSum, correct });
      throw new JobHandedBackError();
    }
    const checkedAt = new Date().toISOString();
    if (await ctx.cancelRequested()) {
      // Every step starts with a check: these times show that none began after the request.
      ctx.log(`cancelled before epoch ${epoch} step ${step + 1}`, { cancelSeenAt: checkedAt, lastPassedCheckAt });
      await reporter.update({ step }, true);
      throw new JobCancelledError();
    }
    lastPassedCheckAt = checkedAt;
    const batch = order.slice(step * spec.batchSize, (step + 1) * spec.batchSize);
    const x = await inputs(batch);
    const y = tf.tidy(
      () =>
        tf.oneHot(
          tf.tensor1d(
            batch.map((image) => image.label),
            'int32',
          ),
          run.numClasses,
        ) as tf.Tensor2D,
    );
    const weights = run.classWeights;
    const result = trainStep(run.network, optimizer, x, y, {
      weightDecay: spec.optimizer.weightDecay,
      labelSmoothing: spec.labelSmoothing,
      sampleWeights: weights ? batch.map((image) => weights[image.label]) : undefined,
      microBatchSize: run.microBatchSize,
    });
    tf.dispose([x, y]);
    if (!Number.isFinite(result.loss)) {
      throw new InvalidJobError(
        `training diverged: loss is ${result.loss} at epoch ${epoch}, step ${step + 1}; lower optimizer.learningRate`,
      );
    }
    lossSum += result.loss * batch.length;
    correct += result.correct;
    await reporter.stepDone(step + 1, batch.length);
  }
  return { loss: lossSum / order.length, accuracy: correct / order.length };
}

/** Early-stopping bookkeeping, the best epoch's weights back where asked, and the final model's evaluation. */
async function finishTraining(ctx: JobContext, run: TrainingRun, model: JobModel, data: JobData, metrics: Metrics): Promise<void> {
  const { spec } = run;
  const last = metrics.epochs.at(-1)?.epoch ?? 0;
  if (spec.earlyStopping && last < spec.epochs) {
    metrics.earlyStopping = { stoppedAfterEpoch: last, bestEpoch: metrics.bestEpoch ?? last, monitor: spec.earlyStopping.monitor };
    ctx.log(`early stopping after epoch ${last}: best was epoch ${metrics.bestEpoch}`);
  }
  // With early stopping the final model is the best epoch's (as Keras' restore_best_weights).
  if (spec.earlyStopping && metrics.bestEpoch && metrics.bestEpoch !== last)
    await restoreEpochWeights(ctx.artifacts, model.resnet, metrics.bestEpoch);
  const final = await evaluate(run.network, run.inputs, data.validation, spec.batchSize, true);
  metrics.evaluation = evaluationOf(final, 'validation', data.validation.length);
  metrics.validationPredictions = predictionsOf(data.validation, final);
  await writeValidationThumbnails(ctx.artifacts, data.loader.root, metrics.validationPredictions);
  metrics.report = classificationReport(
    model.classNames,
    data.validation.map((image) => image.label),
    final.probabilities.map((row) => topIndices(row, 1)[0]),
  );
  await ctx.artifacts.writeMetrics(metrics);
}
