import * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { heapViews, renewDataIdNumber, type WasmBackend } from './heap.js';
import { attrsOf } from '../kernel-attrs.js';
import { liveTapsOf } from './conv-backward.js';

/**
 * A kernel of this project's: one Adam update of every variable given, in one native pass, in place. Inputs `value<i>`,
 * `gradient<i>`, `m<i>`, `v<i>` for i below `count`, each value, m and v holding its data alone (the caller copies shared
 * data first); no outputs: ~500 output tensors a step, made and disposed, cost more JS than the pass itself saves.
 */
export const ADAM = 'RetrainAdam';

export interface AdamAttrs {
  /** [beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1^t, 1 - beta2^t, epsilon, -learningRate], rounded to float32 as tfjs does. */
  scalars: number[];
  count: number;
}

/** The kernel's input names for variable `i`, in the order the addon takes its arrays. */
export const adamInputNames = (i: number) => [`value${i}`, `gradient${i}`, `m${i}`, `v${i}`] as const;

/**
 * First moments whose data, and their second moments', are known +0 outside these taps: those of the last update,
 * which touched only the kept taps. The next update with the same taps need not check.
 */
const zeroOutside = new WeakMap<tf.DataId, string>();

/**
 * Updates each value, m and v in its own memory, each then under a new id for the caches. A filter's gradient that the
 * convolution's backward pass wrote with taps left out (liveTapsOf) updates only the kept taps where the moments are zero
 * at the others: Adam's arithmetic leaves such elements as they are.
 */
export function makeAdam(addon: OneDnnAddon): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { scalars, count } = attrsOf<AdamAttrs>(args.attrs);
    const inputs = args.inputs as Record<string, tf.TensorInfo>;
    const variables = Array.from({ length: count }, (_, i) => {
      const [value, gradient, m, v] = adamInputNames(i).map((name) => {
        const info = inputs[name];
        if (!info) throw new Error(`${ADAM}: no input ${name}`);
        return info;
      });
      for (const [name, info] of [
        ['gradient', gradient],
        ['m', m],
        ['v', v],
      ] as const) {
        if (!tf.util.arraysEqual(info.shape, value.shape) || info.dtype !== 'float32') {
          throw new Error(`${ADAM}: ${name} must be float32 of the value's shape [${value.shape.join(', ')}]`);
        }
      }
      if ([value, m, v].some((info) => backend.refCount(info.dataId) > 1)) {
        throw new Error(`${ADAM}: value${i}, m${i} and v${i} must each hold their data alone`);
      }
      return { value, gradient, m, v, taps: gradient.shape.length === 4 ? liveTapsOf(gradient) : null };
    });
    const views = variables.map(({ value, gradient, m, v }) => heapViews(backend, [value, gradient, m, v]));
    const lives = variables.map(({ gradient, m, taps }) => {
      if (!taps) return null;
      const [kh, kw, c, o] = gradient.shape;
      return Int32Array.from([kh, kw, c * o, ...taps, zeroOutside.get(m.dataId) === taps.join() ? 0 : 1]);
    });
    const keptOnly = addon.adam(
      views.map((arrays) => arrays[0]),
      views.map((arrays) => arrays[1]),
      views.map((arrays) => arrays[2]),
      views.map((arrays) => arrays[3]),
      Float32Array.from(scalars),
      lives,
    );
    variables.forEach(({ value, m, v, taps }, i) => {
      if (keptOnly[i] && taps) zeroOutside.set(m.dataId, taps.join());
      else zeroOutside.delete(m.dataId);
      [value, m, v].forEach(renewDataIdNumber);
    });
    return [];
  };
}
