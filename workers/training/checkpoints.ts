import * as tf from '@tensorflow/tfjs';
import type { JobArtifacts } from '../../common/job-artifacts.js';
import type { CheckpointState, ModelMetadata } from '../../schemas/artifacts.js';
import type { EpochMetrics } from '../../schemas/metrics.js';
import { loadWeightsInto, saveModel, tensorBytes, weightSpec } from '../../engine/model/checkpoint-io.js';
import type { ResNet50 } from '../../engine/model/resnet50.js';

const OPTIMIZER_FILE = 'optimizer.bin';

/** One epoch's weights, optimiser state and metrics history; committed (state.json) last. */
export async function writeCheckpoint(
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
