import { JobArtifacts, type CheckpointSelector } from '../../common/job-artifacts.js';
import { DownloadError } from '../../common/http-download.js';
import { NotFoundError } from '../../common/errors.js';
import type { FrozenSource } from '../../schemas/artifacts.js';
import type { JobSpec } from '../../schemas/job-spec.js';
import { DEFAULT_TRANSFORM, RANDOM_WEIGHTS, type VariantTransform, type WeightsLineage } from '../../schemas/weights.js';
import { loadModel } from '../../engine/model/checkpoint-io.js';
import type { ResNet50 } from '../../engine/model/resnet50.js';
import { importTorchvisionWeights, torchvisionWeightChunks, WeightsMismatchError } from '../../engine/model/torchvision-weights.js';
import { ensureVariant, UnknownVariantError, WeightsCheckError, type VariantSource } from '../../engine/model/weight-variants.js';
import { InvalidJobError, type JobContext } from './job-context.js';
import type { ProgressReporter } from './progress-reporter.js';

/** What the new model's head must be for an earlier model's head to continue in it. */
export interface HeadOf {
  mode: JobSpec['mode'];
  classNames: string[];
}

/** The weights a job starts from, resolved (fetched, for a variant) before its data is loaded. */
export interface StartPoint {
  /** The preprocessing the weights were trained with (torchvision's `weights.transforms()`). */
  transform: VariantTransform;
  /** The same start weights give the same CNN codes: part of the feature cache's key. */
  fingerprint: string;
  /** Loads the weights into the job's model: the backbone, and the head where it continues; says where they came from. */
  load(resnet: ResNet50, head: HeadOf): Promise<WeightsLineage>;
  /** Where the saved models' frozen tensors are read from: the variant's file, or the job's own copy of what it loaded. */
  frozenSource(resnet: ResNet50): Promise<FrozenSource>;
}

/** The frozen layers' start weights, kept once beside the job (its checkpoints keep the layers that train). */
function ownCopy(ctx: JobContext): StartPoint['frozenSource'] {
  return async (resnet) => {
    const file = ctx.artifacts.startWeights;
    if (!(await file.stat())) {
      const chunks = torchvisionWeightChunks(resnet, { frozen: true });
      await ctx.ensureArtifactRoom(
        chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0),
        'the start weights its checkpoints read',
      );
      await file.writeHashed(chunks);
    }
    return { key: file.key, sha256: await file.sha256(), variant: null };
  };
}

/** For the job's owner: the URL tried, what went wrong, and the two ways out. */
function offlineMessage(variant: string, error: DownloadError): string {
  return (
    `could not fetch the "${variant}" weights from ${error.url}: ${error.cause}. Either bring the file in on a host that ` +
    `reaches the artifact store (npx retrain weights import FILE --as ${variant}), or point WEIGHTS_MANIFEST at a mirror ` +
    `that workers can reach; or submit the job with "weights": "random".`
  );
}

/** A variant in the store, fetched on first use (once for every worker), its progress reported while it comes. */
async function variantStart(ctx: JobContext, name: string, reporter: ProgressReporter): Promise<StartPoint> {
  const source: VariantSource = {
    ...ctx.weights,
    onProgress: (progress) => reporter.downloading(progress),
  };
  let record;
  try {
    record = await ensureVariant(name, source);
  } catch (error) {
    if (error instanceof DownloadError) throw new InvalidJobError(offlineMessage(name, error));
    if (error instanceof UnknownVariantError)
      throw new InvalidJobError(`${error.message}; import them with npx retrain weights import FILE --as ${name}`);
    if (error instanceof WeightsCheckError || error instanceof WeightsMismatchError) throw new InvalidJobError(error.message);
    throw error;
  }
  const lineage: WeightsLineage = { source: 'variant', name, sha256: record.sha256, from: record.source };
  return {
    transform: record.transform,
    fingerprint: `sha256:${record.sha256}`,
    load: async (resnet, head) => {
      const file = await ctx.weights.weights.read(name);
      try {
        importTorchvisionWeights(resnet, file, { scope: head.mode === 'pretrained' ? 'all' : 'backbone' });
      } catch (error) {
        if (error instanceof WeightsMismatchError) throw new InvalidJobError(`the "${name}" weights do not fit: ${error.message}`);
        throw error;
      }
      return lineage;
    },
    frozenSource: async () => ({ key: ctx.weights.weights.keyOf(name), sha256: record.sha256, variant: name }),
  };
}

/** Heads continue only into a head of the same shape over the same classes. */
const sameHead = (a: HeadOf, b: HeadOf) =>
  (a.mode === 'fine_tuning') === (b.mode === 'fine_tuning') &&
  a.classNames.length === b.classNames.length &&
  a.classNames.every((n, i) => n === b.classNames[i]);

/** An earlier job's saved model (its best epoch, final model or epoch N): the backbone always, the head where the classes match. */
async function jobStart(ctx: JobContext, jobId: string, checkpoint: 'best' | 'final' | number): Promise<StartPoint> {
  const source = new JobArtifacts(ctx.store, jobId);
  const selector: CheckpointSelector = typeof checkpoint === 'number' ? { kind: 'epoch', epoch: checkpoint } : { kind: checkpoint };
  const model = await source.savedModel(selector).catch((error: Error) => {
    throw error instanceof NotFoundError ? new InvalidJobError(`weights.job ${jobId}: ${error.message}`) : error;
  });
  const metadata = await source.readModelMetadata(model.folder);
  if (!metadata) throw new InvalidJobError(`weights.job ${jobId}: its ${model.label} model has no metadata`);
  const { resize, crop } = metadata.preprocessing;
  return {
    transform: { resizeAt224: Math.round((resize * 224) / crop) },
    fingerprint: `job:${jobId}/${model.label}`,
    load: async (resnet, head) => {
      const { store, prefix } = source.modelLocation(model.folder);
      const earlier = await loadModel(store, prefix);
      const tensors = Buffer.concat(torchvisionWeightChunks(earlier));
      earlier.dispose();
      const kept = sameHead(head, { mode: metadata.mode, classNames: metadata.classNames });
      if (head.mode === 'pretrained' && !kept)
        throw new InvalidJobError(
          `a pretrained job keeps its model's head: job ${jobId} has ${metadata.classNames.length} classes, not ImageNet's`,
        );
      importTorchvisionWeights(resnet, tensors, { scope: kept ? 'all' : 'backbone' });
      return { source: 'job', job: jobId, checkpoint: model.label, head: kept ? 'kept' : 'new' };
    },
    frozenSource: ownCopy(ctx),
  };
}

/** Resolves the spec's `weights`: seeded random ones, a stored (or fetched) variant, or an earlier job's model. */
export async function resolveStartPoint(ctx: JobContext, reporter: ProgressReporter): Promise<StartPoint> {
  const { weights, seed } = ctx.spec;
  if (weights === RANDOM_WEIGHTS)
    return {
      transform: DEFAULT_TRANSFORM,
      fingerprint: `random:${seed}`,
      load: async () => ({ source: 'random', seed }),
      frozenSource: ownCopy(ctx),
    };
  if (typeof weights === 'string') return variantStart(ctx, weights, reporter);
  return jobStart(ctx, weights.job, weights.checkpoint);
}
