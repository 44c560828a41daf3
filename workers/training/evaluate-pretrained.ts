import { emptyMetrics } from '../../schemas/metrics.js';
import type { JobModel } from './build-model.js';
import { evaluate, evaluationOf, predictionsOf, writeValidationThumbnails } from './evaluate.js';
import type { JobContext } from './job-context.js';
import { datasetOf, type JobData } from './load-data.js';
import type { ProgressReporter } from './progress-reporter.js';
import type { Outcome } from './train.js';

/**
 * A pretrained job trains nothing: with a dataset it evaluates the ImageNet model on every image (scored
 * where the class folders are named as ImageNet classes); without one there is nothing to evaluate.
 */
export async function evaluatePretrained(ctx: JobContext, model: JobModel, data: JobData, reporter: ProgressReporter): Promise<Outcome> {
  const metrics = { ...emptyMetrics(model.classNames), weights: model.weights, dataset: datasetOf(ctx.spec, data) };
  if (data.validation.length > 0) {
    await reporter.phase('evaluating');
    const imageNetIndex = new Map(model.classNames.map((name, i) => [name, i]));
    const labels = data.classNames.map((name) => imageNetIndex.get(name));
    const labelled = labels.every((label) => label !== undefined);
    const images = data.validation.map((image) => ({ ...image, label: labels[image.label] ?? image.label }));
    const evaluated = await evaluate(model.resnet.network, (batch) => data.loader.batch(batch), images, ctx.spec.batchSize, labelled);
    metrics.evaluation = evaluationOf(evaluated, 'all', images.length);
    metrics.validationPredictions = predictionsOf(images, evaluated);
    await writeValidationThumbnails(ctx.artifacts, data.loader.root, metrics.validationPredictions);
  }
  await ctx.artifacts.writeMetrics(metrics);
  return { metrics, resumedFromEpoch: null };
}
