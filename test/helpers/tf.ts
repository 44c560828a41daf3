import type * as tf from '../../engine/tf.js';
import { loadConfig } from '../../schemas/config.js';
import { selectBackend, type BackendChoice } from '../../engine/backend/backend.js';

/** Tests run on the backend CI has (wasm) unless TEST_BACKEND says otherwise. */
export async function useTestBackend(choice: BackendChoice = (process.env.TEST_BACKEND as BackendChoice) ?? 'wasm') {
  return selectBackend(choice, { nativeKernels: loadConfig().RETRAIN_NATIVE_KERNELS });
}

export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** Every weight of the model by name, copied out of the backend. */
export function snapshotWeights(model: tf.LayersModel): Map<string, Float32Array> {
  return new Map(model.weights.map((w) => [w.originalName, w.read().dataSync().slice() as Float32Array]));
}

export function bitIdentical(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
