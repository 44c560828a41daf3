import * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { heapViews, renewDataIdNumber, sharedOutput, type WasmBackend } from './heap.js';
import { attrsOf } from '../kernel-attrs.js';
import { liveTapsOf } from './conv-backward.js';

/**
 * A kernel of this project's: one Adam update of every variable given, in one native pass. Inputs `value<i>`, `gradient<i>`,
 * `m<i>`, `v<i>` for i below `count`; outputs [value0, m0, v0, value1, m1, v1, ...].
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
 * Updates each value, m and v in their own memory where no other tensor holds it (a variable's data usually has no other
 * holder) and returns them: the caller's assign then keeps the same data, under a new id for the caches. Data another
 * tensor also holds is copied into new outputs first, so that tensor keeps its values. A filter's gradient that the
 * convolution's backward pass wrote with taps left out (liveTapsOf) updates only the kept taps where the moments are
 * zero at the others: Adam's arithmetic leaves such elements as they are.
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
      for (const [name, info] of Object.entries({ gradient, m, v })) {
        if (!tf.util.arraysEqual(info.shape, value.shape) || info.dtype !== 'float32') {
          throw new Error(`${ADAM}: ${name} must be float32 of the value's shape [${value.shape.join(', ')}]`);
        }
      }
      const updated = [value, m, v];
      const outputs = updated.map((info) => {
        return backend.refCount(info.dataId) > 1 ? backend.makeOutput(info.shape, 'float32') : sharedOutput(backend, info);
      });
      const taps = gradient.shape.length === 4 ? liveTapsOf(gradient) : null;
      return { gradient, m, updated, outputs, taps };
    });
    // Views after every allocation: one can grow the heap, which detaches earlier views.
    const views = variables.map(({ gradient, updated, outputs }) => {
      const [gradientData, ...rest] = heapViews(backend, [gradient, ...updated, ...outputs]);
      const [from, into] = [rest.slice(0, 3), rest.slice(3)];
      outputs.forEach((output, i) => output.dataId !== updated[i].dataId && into[i].set(from[i]));
      return { gradientData, into };
    });
    const lives = variables.map(({ gradient, m, taps }) => {
      if (!taps) return null;
      const [kh, kw, c, o] = gradient.shape;
      return Int32Array.from([kh, kw, c * o, ...taps, zeroOutside.get(m.dataId) === taps.join() ? 0 : 1]);
    });
    const keptOnly = addon.adam(
      views.map(({ into }) => into[0]),
      views.map(({ gradientData }) => gradientData),
      views.map(({ into }) => into[1]),
      views.map(({ into }) => into[2]),
      Float32Array.from(scalars),
      lives,
    );
    return variables.flatMap(({ outputs, taps }, i) => {
      if (keptOnly[i] && taps) zeroOutside.set(outputs[1].dataId, taps.join());
      else zeroOutside.delete(outputs[1].dataId);
      outputs.forEach(renewDataIdNumber);
      return outputs;
    });
  };
}
