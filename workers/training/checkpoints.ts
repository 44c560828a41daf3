import * as tf from '../../engine/tf.js';
import type { JobArtifacts } from '../../common/job-artifacts.js';
import type { CheckpointState, EpochPosition, InterruptedState, ModelMetadata } from '../../schemas/artifacts.js';
import type { EpochMetrics } from '../../schemas/metrics.js';
import { loadWeightsInto, ownWeights, saveModel, tensorBytes, weightSpec } from '../../engine/model/checkpoint-io.js';
import type { ResNet50 } from '../../engine/model/resnet50.js';
import type { JobModel } from './build-model.js';
import { isDiskFull } from '../../common/errors.js';
import { InvalidJobError } from './job-context.js';

/**
 * One epoch's weights, optimiser state and metrics history; committed (state.json) last. A full disk
 * removes the half-written folder and fails the job at once: retrying cannot make room.
 */
/** A job's model as its saved copies need it: the network, and where its frozen tensors are read from. */
export type SavedWeights = Pick<JobModel, 'resnet' | 'frozenFrom'>;

export async function writeCheckpoint(
  artifacts: JobArtifacts,
  model: SavedWeights,
  optimizer: tf.Optimizer,
  { epoch, history }: { epoch: number; history: EpochMetrics[] },
  metadata: ModelMetadata,
): Promise<void> {
  const folder = artifacts.checkpointFolder(epoch);
  await writeWhole(artifacts, `epoch ${epoch}'s checkpoint`, folder, async () => {
    const optimizerWeights = await writeTrainingState(artifacts, folder, model, optimizer);
    await artifacts.writeModelMetadata(folder, { ...metadata, epoch });
    await artifacts.commitCheckpoint({ epoch, history, optimizerWeights });
  });
}

/** The epoch in progress, between two steps, as `interrupted/` (replacing any earlier one); committed last. */
export async function writeInterruptedCheckpoint(
  artifacts: JobArtifacts,
  model: SavedWeights,
  optimizer: tf.Optimizer,
  state: Omit<InterruptedState, 'optimizerWeights'>,
): Promise<void> {
  const folder = artifacts.interruptedFolder;
  await artifacts.removeInterrupted();
  await writeWhole(artifacts, `epoch ${state.epoch}'s interrupted checkpoint`, folder, async () => {
    const optimizerWeights = await writeTrainingState(artifacts, folder, model, optimizer);
    await artifacts.commitInterrupted({ ...state, optimizerWeights });
  });
}

/**
 * Writes a model folder (a checkpoint, the final model) whole or not at all: whatever stops it, the
 * half-written folder is removed; a full disk fails the job at once, since retrying cannot make room.
 */
export async function writeWhole(artifacts: JobArtifacts, what: string, folder: string, write: () => Promise<void>): Promise<void> {
  try {
    await write();
  } catch (error) {
    await artifacts.removeFolder(folder);
    if (isDiskFull(error)) throw new InvalidJobError(`the artifact store is full: ${what} could not be written`);
    throw error;
  }
}

/** float32: 4 bytes an element, in checkpoints and safetensors alike. */
const bytesOf = (weights: ReadonlyArray<{ shape: ReadonlyArray<number | null> }>) =>
  weights.reduce((sum, weight) => sum + 4 * weight.shape.reduce<number>((size, dim) => size * (dim ?? 1), 1), 0);

/** The weights a saved copy writes: those of the layers that train when the frozen ones have a source. */
const savedWeightBytes = ({ resnet, frozenFrom }: SavedWeights) => bytesOf(frozenFrom ? ownWeights(resnet) : resnet.model.weights);

/** What an epoch's checkpoint may take: its weights, and the optimiser's slots (Adam's two moments) for each trainable one. */
export const checkpointBytes = (model: SavedWeights) =>
  savedWeightBytes(model) + 2 * bytesOf(model.resnet.model.weights.filter((weight) => weight.trainable));

/** What the final model takes: its weights, and the whole model again as torchvision safetensors when nothing is frozen. */
export const finalModelBytes = (model: SavedWeights) =>
  savedWeightBytes(model) + (model.frozenFrom ? 0 : bytesOf(model.resnet.model.weights));

/** Weights, then the optimiser state; returns the latter's manifest for the state file. */
async function writeTrainingState(artifacts: JobArtifacts, folder: string, model: SavedWeights, optimizer: tf.Optimizer) {
  const { store, prefix } = artifacts.modelLocation(folder);
  await saveModel(model.resnet, store, prefix, model.frozenFrom);
  // Adam's moments are twice the model: streamed a tensor at a time, never encoded whole.
  const state = await optimizer.getWeights();
  await artifacts.optimizerState(folder).write(tensorBytes(state.map((weight) => weight.tensor)), { recycle: true });
  return state.map(({ name, tensor }) => weightSpec(name, tensor));
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
      await artifacts.optimizerState(artifacts.checkpointFolder(epoch)).remove({ recycle: true });
    } else {
      await artifacts.removeCheckpoint(epoch);
    }
  }
}

/** Once the final model is saved the job never resumes: its checkpoints keep their weights alone. */
export async function dropResumeState(artifacts: JobArtifacts): Promise<void> {
  for (const epoch of await artifacts.checkpointEpochs())
    await artifacts.optimizerState(artifacts.checkpointFolder(epoch)).remove({ recycle: true });
  await artifacts.removeInterrupted();
}

/** Where a job goes on from: after `epoch` (0: none yet), and inside the next one if it was interrupted. */
export interface ResumePoint {
  epoch: number;
  history: EpochMetrics[];
  position: EpochPosition | null;
  /** The final model was saved: no epoch trains again (the optimiser's state is gone). */
  trainingDone?: true;
}

/**
 * Loads the newest state (weights, optimiser state, metrics history): the interrupted checkpoint when
 * it continues the newest complete one, else that one; null when there is none.
 */
export async function resumeFromLatestCheckpoint(
  artifacts: JobArtifacts,
  resnet: ResNet50,
  optimizer: tf.Optimizer,
): Promise<ResumePoint | null> {
  const latest = (await artifacts.completeCheckpoints()).at(-1) ?? 0;
  const interrupted = await artifacts.readInterruptedState();
  if (interrupted && interrupted.epoch === latest + 1) {
    await loadTrainingState(artifacts, artifacts.interruptedFolder, interrupted.optimizerWeights, resnet, optimizer);
    return { epoch: latest, history: interrupted.history, position: interrupted.position };
  }
  const state = latest > 0 ? await artifacts.readCheckpointState(latest) : null;
  if (!state) return null;
  // Saving the final model dropped the optimiser's state: nothing trains again, and an attempt after a kill
  // in the steps after that save (the int8 check) goes on from the weights alone.
  if (await artifacts.hasFinalModel()) {
    await restoreEpochWeights(artifacts, resnet, latest);
    return { epoch: latest, history: state.history, position: null, trainingDone: true };
  }
  await loadTrainingState(artifacts, artifacts.checkpointFolder(latest), state.optimizerWeights, resnet, optimizer);
  return { epoch: latest, history: state.history, position: null };
}

async function loadTrainingState(
  artifacts: JobArtifacts,
  folder: string,
  optimizerWeights: CheckpointState['optimizerWeights'],
  resnet: ResNet50,
  optimizer: tf.Optimizer,
): Promise<void> {
  const { store, prefix } = artifacts.modelLocation(folder);
  await loadWeightsInto(resnet, store, prefix);
  const bytes = await artifacts.optimizerState(folder).read();
  const named = tf.io.decodeWeights(
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
    optimizerWeights,
  );
  await optimizer.setWeights(optimizerWeights.map((spec) => ({ name: spec.name, tensor: named[spec.name] })));
}

export function restoreEpochWeights(artifacts: JobArtifacts, resnet: ResNet50, epoch: number): Promise<void> {
  const { store, prefix } = artifacts.modelLocation(artifacts.checkpointFolder(epoch));
  return loadWeightsInto(resnet, store, prefix);
}
