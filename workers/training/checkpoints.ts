import * as tf from '@tensorflow/tfjs';
import type { JobArtifacts } from '../../common/job-artifacts.js';
import type { CheckpointState, ModelMetadata } from '../../schemas/artifacts.js';
import type { EpochMetrics } from '../../schemas/metrics.js';
import { loadWeightsInto, saveModel, tensorBytes, weightSpec } from '../../engine/model/checkpoint-io.js';
import type { ResNet50 } from '../../engine/model/resnet50.js';
import { InvalidJobError } from './job-context.js';

const OPTIMIZER_FILE = 'optimizer.bin';

const DISK_FULL = new Set(['ENOSPC', 'EDQUOT']);

/**
 * One epoch's weights, optimiser state and metrics history; committed (state.json) last. A full disk
 * removes the half-written folder and fails the job at once: retrying cannot make room.
 */
export async function writeCheckpoint(
  artifacts: JobArtifacts,
  resnet: ResNet50,
  optimizer: tf.Optimizer,
  progress: { epoch: number; history: EpochMetrics[] },
  metadata: ModelMetadata,
): Promise<void> {
  try {
    await writeCheckpointFiles(artifacts, resnet, optimizer, progress, metadata);
  } catch (error) {
    if (!DISK_FULL.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
    await artifacts.removeCheckpoint(progress.epoch);
    throw new InvalidJobError(`the artifact store is full: epoch ${progress.epoch}'s checkpoint could not be written`);
  }
}

async function writeCheckpointFiles(
  artifacts: JobArtifacts,
  resnet: ResNet50,
  optimizer: tf.Optimizer,
  { epoch, history }: { epoch: number; history: EpochMetrics[] },
  metadata: ModelMetadata,
): Promise<void> {
  const folder = artifacts.checkpointFolder(epoch);
  await saveModel(resnet, artifacts.store, folder);
  // Adam's moments are twice the model: streamed a tensor at a time, never encoded whole.
  const state = await optimizer.getWeights();
  await artifacts.store.write(`${folder}/${OPTIMIZER_FILE}`, tensorBytes(state.map((weight) => weight.tensor)));
  const specs = state.map(({ name, tensor }) => weightSpec(name, tensor));
  await artifacts.writeModelMetadata(folder, { ...metadata, epoch });
  await artifacts.commitCheckpoint({ epoch, history, optimizerWeights: specs });
}

/**
 * After `latest` is committed: keeps it whole (the resume point), keeps the best epoch and every Nth
 * as weights only, and removes every other checkpoint, half-written ones included.
 */
export async function pruneCheckpoints(
  artifacts: JobArtifacts,
  { latest, best, keepEveryN }: { latest: number; best: number | null; keepEveryN: number },
): Promise<void> {
  for (const epoch of await artifacts.checkpointEpochs()) {
    if (epoch === latest) continue;
    if (epoch === best || (keepEveryN > 0 && epoch % keepEveryN === 0)) {
      await artifacts.store.remove(`${artifacts.checkpointFolder(epoch)}/${OPTIMIZER_FILE}`);
    } else {
      await artifacts.removeCheckpoint(epoch);
    }
  }
}

/** Loads the newest complete checkpoint (weights, optimiser state, metrics history), if any. */
export async function resumeFromLatestCheckpoint(
  artifacts: JobArtifacts,
  resnet: ResNet50,
  optimizer: tf.Optimizer,
): Promise<CheckpointState | null> {
  const latest = (await artifacts.completeCheckpoints()).at(-1);
  if (latest === undefined) return null;
  const state = await artifacts.readCheckpointState(latest);
  if (!state) return null;
  const folder = artifacts.checkpointFolder(latest);
  await loadWeightsInto(resnet, artifacts.store, folder);
  const bytes = await artifacts.store.read(`${folder}/${OPTIMIZER_FILE}`);
  const named = tf.io.decodeWeights(
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
    state.optimizerWeights,
  );
  await optimizer.setWeights(state.optimizerWeights.map((spec) => ({ name: spec.name, tensor: named[spec.name] })));
  return state;
}

export function restoreEpochWeights(artifacts: JobArtifacts, resnet: ResNet50, epoch: number): Promise<void> {
  return loadWeightsInto(resnet, artifacts.store, artifacts.checkpointFolder(epoch));
}
