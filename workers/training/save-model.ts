import type { Metrics } from '../../schemas/metrics.js';
import { saveModel } from '../../engine/model/checkpoint-io.js';
import { torchvisionWeightChunks } from '../../engine/model/torchvision-weights.js';
import type { JobModel } from './build-model.js';
import { dropResumeState, finalModelBytes, writeWhole } from './checkpoints.js';
import type { JobContext } from './job-context.js';
import type { ProgressReporter } from './progress-reporter.js';

/**
 * The final model as a tfjs layers model and, when nothing is frozen, torchvision safetensors (with frozen
 * layers it keeps only what trains, and a download makes the whole file); its metadata.json marks it complete.
 */
export async function saveFinalModel(ctx: JobContext, model: JobModel, metrics: Metrics, reporter: ProgressReporter): Promise<void> {
  await reporter.phase('saving');
  const { artifacts } = ctx;
  const folder = artifacts.finalFolder;
  await ctx.ensureArtifactRoom(finalModelBytes(model), 'the final model');
  await writeWhole(artifacts, 'the final model', folder, async () => {
    const { store, prefix } = artifacts.modelLocation(folder);
    await saveModel(model.resnet, store, prefix, model.frozenFrom);
    if (!model.frozenFrom) await artifacts.torchvisionWeights(folder).write(torchvisionWeightChunks(model.resnet));
    await artifacts.writeModelMetadata(folder, { ...model.metadata, epochs: metrics.epochs.length });
  });
  await dropResumeState(artifacts);
}
