import path from 'node:path';
import { DatasetError, type LabelledImage } from '../../common/image-folder.js';
import { isTrainingSpec, type JobSpec } from '../../schemas/job-spec.js';
import type { Metrics } from '../../schemas/metrics.js';
import { SYNTHETIC_CACHE, UPLOAD_CACHE } from '../../schemas/dataset.js';
import { fetchUpload } from '../../common/shared-uploads.js';
import type { Preprocessing } from '../../schemas/model.js';
import type { VariantTransform } from '../../schemas/weights.js';
import { ImageLoader, resolveDataset } from '../../engine/data/datasets.js';
import { cachePolicyOf, evictFolderCache } from '../../common/cache-eviction.js';
import { preflight, withoutBadFiles } from '../../engine/data/preflight.js';
import { preprocessingFor } from '../../engine/data/preprocess.js';
import { stratifiedSplit } from '../../engine/data/split.js';
import { storeInspectionCache } from './inspection-cache.js';
import { InvalidJobError, type JobContext } from './job-context.js';
import type { ProgressReporter } from './progress-reporter.js';

/** A job's usable images, split, with the loader that decodes them for the model. */
export interface JobData {
  /** Of the dataset, sorted; empty for a pretrained job without one. */
  classNames: string[];
  train: LabelledImage[];
  /** Held-out images of a training job; every image of a pretrained job's dataset. */
  validation: LabelledImage[];
  preprocessing: Preprocessing;
  loader: ImageLoader;
  /** The preflight's digest of the dataset's files and bytes; null without a dataset. */
  digest: string | null;
}

/** What the job's metrics record of its data: the spec and the preflight's digest (null without a dataset). */
export const datasetOf = (spec: JobSpec, data: JobData): Metrics['dataset'] =>
  spec.dataset ? { spec: spec.dataset, digest: data.digest } : null;

async function evictCache(ctx: JobContext, folder: string, what: string): Promise<void> {
  const evicted = await evictFolderCache(folder, cachePolicyOf(ctx.config));
  if (evicted.length) ctx.log(`removed ${evicted.length} unused ${what} from the cache`);
}

/**
 * Resolves the dataset (fetching an upload received on another host), preflights it (unusable files are skipped and listed, not discovered hours in)
 * and splits it per class. A pretrained job may have no dataset: it then has no images.
 */
export async function loadData(ctx: JobContext, reporter: ProgressReporter, transform: VariantTransform): Promise<JobData> {
  const { spec, config } = ctx;
  const preprocessing = preprocessingFor(spec.inputSize, transform.resizeAt224);
  if (!spec.dataset)
    return { classNames: [], train: [], validation: [], preprocessing, loader: new ImageLoader('', preprocessing), digest: null };
  await reporter.phase('loading_data');
  const training = isTrainingSpec(spec);
  if (spec.dataset.type === 'upload' && ctx.store.shared && (await fetchUpload(ctx.store, config.DATA_DIR, spec.dataset.id))) {
    await evictCache(ctx, path.join(config.DATA_DIR, UPLOAD_CACHE), 'fetched upload(s)');
  }
  const folder = await resolveDataset(spec.dataset, config.DATA_DIR).catch((error: Error) => {
    throw error instanceof DatasetError ? new InvalidJobError(error.message) : error;
  });
  if (spec.dataset.type === 'synthetic') await evictCache(ctx, path.join(config.DATA_DIR, SYNTHETIC_CACHE), 'synthetic data set(s)');
  const preflightReport = await preflight(
    folder,
    { validationSplit: training ? spec.validationSplit : 0, seed: spec.seed, minImagesPerClass: 1 },
    storeInspectionCache(ctx.store, cachePolicyOf(config)),
  );
  await ctx.artifacts.writePreflight(preflightReport);
  await reporter.datasetDigest(preflightReport.digest ?? null);
  if (preflightReport.bad.length) {
    ctx.log(`skipping ${preflightReport.bad.length} unusable file(s)`, {
      skipped: preflightReport.bad.slice(0, 20).map((b) => `${b.file} (${b.reason})`),
    });
    await reporter.skipped(preflightReport.bad.map(({ file, reason }) => ({ file, reason })));
  }
  if (training && preflightReport.smallClasses.length) {
    throw new InvalidJobError(`class(es) with no usable image: ${preflightReport.smallClasses.join(', ')}`);
  }
  const dataset = withoutBadFiles(folder, preflightReport);
  const { train, validation } = training
    ? stratifiedSplit(dataset.images, spec.validationSplit, spec.seed)
    : { train: [], validation: dataset.images };
  if (training) reporter.planSteps(Math.ceil(train.length / spec.batchSize));
  const loader = new ImageLoader(dataset.root, preprocessing);
  return { classNames: dataset.classNames, train, validation, preprocessing, loader, digest: preflightReport.digest ?? null };
}
