import { modelConfigOf } from '../../common/model-config.js';
import type { FrozenSource, ModelMetadata } from '../../schemas/artifacts.js';
import { isTrainingSpec } from '../../schemas/job-spec.js';
import type { ModelSummary } from '../../schemas/model.js';
import { loadImageNetClassNames } from '../../engine/model/imagenet-classes.js';
import { hasFrozenLayers } from '../../engine/model/checkpoint-io.js';
import { buildResNet50, type ResNet50 } from '../../engine/model/resnet50.js';
import { summarize } from '../../engine/model/summary.js';
import { RANDOM_WEIGHTS, type WeightsLineage } from '../../schemas/weights.js';
import { InvalidJobError, type JobContext } from './job-context.js';
import type { JobData } from './load-data.js';
import type { ProgressReporter } from './progress-reporter.js';
import type { StartPoint } from './start-point.js';

/** The job's network and what describes it: the summary, and the metadata every saved copy carries. */
export interface JobModel {
  resnet: ResNet50;
  summary: ModelSummary;
  classNames: string[];
  metadata: ModelMetadata;
  /** Where the start weights came from (summary, metrics, every saved copy's metadata). */
  weights: WeightsLineage;
  /** Names the start weights in the feature cache's key. */
  weightsFingerprint: string;
  /** Where its saved models read the frozen layers' weights from (they keep the rest); null when nothing is frozen. */
  frozenFrom: FrozenSource | null;
}

/**
 * Records where the frozen tensors are (before pinning a variant: a purge reads the record to unpin),
 * then pins the variant so it stays while the job keeps models that read it.
 */
async function frozenSourceOf(ctx: JobContext, start: StartPoint, resnet: ResNet50): Promise<FrozenSource | null> {
  if (!isTrainingSpec(ctx.spec) || !hasFrozenLayers(resnet)) return null;
  const source = await start.frozenSource(resnet);
  await ctx.artifacts.writeFrozenSource(source);
  if (source.variant) {
    await ctx.weights.weights.pin(source.variant, ctx.jobId);
    // Replaced between the load and the pin: these checkpoints would name bytes the store no longer holds.
    const record = await ctx.weights.weights.record(source.variant);
    if (record?.sha256 !== source.sha256)
      throw new InvalidJobError(`the "${source.variant}" weights were replaced while the job started: submit it again`);
  }
  return source;
}

/**
 * The ResNet-50 variant of the job's mode, with ImageNet weights (the whole network for pretrained,
 * the backbone under a new head otherwise) or seeded random ones; its summary is written at once.
 */
export async function buildModel(ctx: JobContext, data: JobData, start: StartPoint, reporter: ProgressReporter): Promise<JobModel> {
  const { spec } = ctx;
  await reporter.phase('building_model');
  const classNames = isTrainingSpec(spec) ? data.classNames : await loadImageNetClassNames();
  // Start weights other than seeded random ones overwrite the backbone: it is not drawn first.
  const resnet = buildResNet50(modelConfigOf(spec, classNames.length), { randomBackbone: spec.weights === RANDOM_WEIGHTS });
  try {
    const weights = await start.load(resnet, { mode: spec.mode, classNames });
    const summary = { ...summarize(resnet), weights };
    await ctx.artifacts.writeSummary(summary);
    const metadata = {
      classNames,
      preprocessing: data.preprocessing,
      spec,
      mode: spec.mode,
      inputSize: spec.inputSize,
      backend: ctx.backend,
      weights,
    };
    const frozenFrom = await frozenSourceOf(ctx, start, resnet);
    return { resnet, summary, classNames, metadata, weights, weightsFingerprint: start.fingerprint, frozenFrom };
  } catch (error) {
    resnet.dispose();
    throw error;
  }
}
