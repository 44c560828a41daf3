import { readFile } from 'node:fs/promises';
import { modelConfigOf } from '../../common/model-config.js';
import type { ModelMetadata } from '../../schemas/artifacts.js';
import { isTrainingSpec } from '../../schemas/job-spec.js';
import type { ModelSummary } from '../../schemas/model.js';
import { loadImageNetClassNames } from '../../engine/model/imagenet-classes.js';
import { buildResNet50, type ResNet50 } from '../../engine/model/resnet50.js';
import { summarize } from '../../engine/model/summary.js';
import { importTorchvisionWeights } from '../../engine/model/torchvision-weights.js';
import { InvalidJobError, type JobContext } from './job-context.js';
import type { JobData } from './load-data.js';
import type { ProgressReporter } from './progress-reporter.js';

/** The job's network and what describes it: the summary, and the metadata every saved copy carries. */
export interface JobModel {
  resnet: ResNet50;
  summary: ModelSummary;
  classNames: string[];
  metadata: ModelMetadata;
}

/** For the job's owner: names the setting, never the worker's paths (the worker's log has the file). */
export function imageNetWeightsMissingMessage(): string {
  return (
    `ImageNet weights not found on the worker (its IMAGENET_WEIGHTS file). Put torchvision's ResNet-50 weights there as safetensors with ` +
    `torchvision tensor names (for example the resnet50.tv_in1k model.safetensors, which is torchvision's ` +
    `IMAGENET1K_V1), or point IMAGENET_WEIGHTS at the file; or submit the job with "weights": "random".`
  );
}

async function readImageNetWeights(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new InvalidJobError(imageNetWeightsMissingMessage());
    throw error;
  }
}

/**
 * The ResNet-50 variant of the job's mode, with ImageNet weights (the whole network for pretrained,
 * the backbone under a new head otherwise) or seeded random ones; its summary is written at once.
 */
export async function buildModel(ctx: JobContext, data: JobData, reporter: ProgressReporter): Promise<JobModel> {
  const { spec, config } = ctx;
  await reporter.phase('building_model');
  const training = isTrainingSpec(spec);
  const classNames = training ? data.classNames : await loadImageNetClassNames();
  const resnet = buildResNet50(modelConfigOf(spec, classNames.length));
  try {
    if (spec.weights === 'imagenet') {
      importTorchvisionWeights(resnet, await readImageNetWeights(config.IMAGENET_WEIGHTS), { scope: training ? 'backbone' : 'all' });
    }
    const summary = summarize(resnet);
    await ctx.artifacts.writeSummary(summary);
    const metadata = {
      classNames,
      preprocessing: data.preprocessing,
      spec,
      mode: spec.mode,
      inputSize: spec.inputSize,
      backend: ctx.backend,
    };
    return { resnet, summary, classNames, metadata };
  } catch (error) {
    resnet.dispose();
    throw error;
  }
}
