import * as tf from '../../tf.js';
import { heapViews, renewDataIdNumber, type WasmBackend } from './heap.js';
import type { OneDnnAddon } from '../onednn.js';
import { liveTapsOf } from './conv-backward.js';

/** One variable's Adam update: its value, the gradient, and its first and second moments. */
export type AdamUpdate = readonly [value: tf.Tensor, gradient: tf.Tensor, m: tf.Tensor, v: tf.Tensor];

/**
 * First moments whose data, and their second moments', are known +0 outside these taps: those of the last update,
 * which touched only the kept taps. The next update with the same taps need not check.
 */
const zeroOutside = new WeakMap<tf.DataId, string>();

/**
 * One Adam update of every variable given, in one native pass over their data, in place (each value, m and v must hold its
 * data alone), each then under a new id for the caches. Not a tfjs kernel:
 * ~650 named inputs and ~500 outputs a step, looked up, made and disposed, cost more JS than the pass itself saves.
 * `scalars`: [beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1^t, 1 - beta2^t, epsilon, -learningRate], rounded to float32
 * as tfjs does. A filter's gradient that the convolution's backward pass wrote with taps left out (liveTapsOf) updates
 * only the kept taps where the moments are zero at the others: Adam's arithmetic leaves such elements as they are.
 */
export function nativeAdam(addon: OneDnnAddon, updates: readonly AdamUpdate[], scalars: readonly number[]): void {
  const backend = tf.backend() as WasmBackend;
  for (const [value, gradient, m, v] of updates) {
    for (const [name, tensor] of [
      ['gradient', gradient],
      ['m', m],
      ['v', v],
    ] as const) {
      if (!tf.util.arraysEqual(tensor.shape, value.shape) || tensor.dtype !== 'float32' || value.dtype !== 'float32') {
        throw new Error(`Adam: ${name} must be float32 of the value's shape [${value.shape.join(', ')}]`);
      }
    }
    if ([value, m, v].some((tensor) => backend.refCount(tensor.dataId) > 1)) {
      throw new Error('Adam: a value, m and v must each hold their data alone');
    }
  }
  const views = updates.map((tensors) => heapViews(backend, tensors));
  const taps = updates.map(([, gradient]) => (gradient.rank === 4 ? liveTapsOf(gradient) : null));
  const lives = updates.map(([, gradient, m], i) => {
    const kept = taps[i];
    if (!kept) return null;
    const [kh, kw, c, o] = gradient.shape;
    return Int32Array.from([kh, kw, c * o, ...kept, zeroOutside.get(m.dataId) === kept.join() ? 0 : 1]);
  });
  const keptOnly = addon.adam(
    views.map((arrays) => arrays[0]),
    views.map((arrays) => arrays[1]),
    views.map((arrays) => arrays[2]),
    views.map((arrays) => arrays[3]),
    Float32Array.from(scalars),
    lives,
  );
  updates.forEach(([value, , m, v], i) => {
    const kept = taps[i];
    if (keptOnly[i] && kept) zeroOutside.set(m.dataId, kept.join());
    else zeroOutside.delete(m.dataId);
    [value, m, v].forEach(renewDataIdNumber);
  });
}
