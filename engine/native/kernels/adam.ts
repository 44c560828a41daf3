import type * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { heapViews, renewDataIdNumber, type WasmBackend } from './heap.js';
import { attrsOf } from '../kernel-attrs.js';
import { liveTapsOf } from './conv-backward.js';

/** A kernel of this project's: one Adam update of one variable, outputs [value, m, v]. */
export const ADAM = 'RetrainAdam';

export interface AdamAttrs {
  /** [beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1^t, 1 - beta2^t, epsilon, -learningRate], rounded to float32 as tfjs does. */
  scalars: number[];
}

/**
 * First moments whose data, and their second moments', are known +0 outside these taps: those of the last update,
 * which touched only the kept taps. The next update with the same taps need not check.
 */
const zeroOutside = new WeakMap<tf.DataId, string>();

/**
 * Updates value, m and v in their own memory where no other tensor holds it (a variable's data usually has no other
 * holder) and returns them: the caller's assign then keeps the same data, under a new id for the caches. Data another
 * tensor also holds is copied into new outputs first, so that tensor keeps its values. A filter's gradient that the
 * convolution's backward pass wrote with taps left out (liveTapsOf) updates only the kept taps where the moments are
 * zero at the others: Adam's arithmetic leaves such elements as they are.
 */
export function makeAdam(addon: OneDnnAddon): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { value, gradient, m, v } = args.inputs as Record<'value' | 'gradient' | 'm' | 'v', tf.TensorInfo>;
    const { scalars } = attrsOf<AdamAttrs>(args.attrs);
    for (const [name, info] of Object.entries({ gradient, m, v })) {
      if (info.shape.join() !== value.shape.join() || info.dtype !== 'float32') {
        throw new Error(`${ADAM}: ${name} must be float32 of the value's shape [${value.shape.join(', ')}]`);
      }
    }
    const updated = [value, m, v];
    const outputs = updated.map((info) => {
      if (backend.refCount(info.dataId) > 1) return backend.makeOutput(info.shape, 'float32');
      backend.incRef(info.dataId);
      // A new TensorInfo: the engine would hand back an input tensor object itself as the output.
      return { dataId: info.dataId, shape: info.shape, dtype: info.dtype };
    });
    // Views after every allocation: one can grow the heap, which detaches earlier views.
    const [gradientData, ...views] = heapViews(backend, [gradient, ...updated, ...outputs]);
    const [into, from] = [views.slice(3), views.slice(0, 3)];
    outputs.forEach((output, i) => output.dataId !== updated[i].dataId && into[i].set(from[i]));
    const taps = gradient.shape.length === 4 ? liveTapsOf(gradient) : null;
    const known = taps !== null && zeroOutside.get(m.dataId) === taps.join();
    const [kh, kw, c, o] = gradient.shape;
    const live = taps && Int32Array.from([kh, kw, c * o, ...taps, known ? 0 : 1]);
    const keptOnly = addon.adam(into[0], gradientData, into[1], into[2], Float32Array.from(scalars), live);
    if (keptOnly && taps) zeroOutside.set(outputs[1].dataId, taps.join());
    else zeroOutside.delete(outputs[1].dataId);
    outputs.forEach(renewDataIdNumber);
    return outputs;
  };
}
