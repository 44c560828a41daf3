import type * as tf from '@tensorflow/tfjs';
import type { OneDnnAddon } from '../onednn.js';
import { heapViews, type WasmBackend } from './heap.js';
import { attrsOf } from '../kernel-attrs.js';

/** A kernel of this project's: one Adam update of one variable, outputs [value, m, v]. */
export const ADAM = 'RetrainAdam';

export interface AdamAttrs {
  /** [beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1^t, 1 - beta2^t, epsilon, -learningRate], rounded to float32 as tfjs does. */
  scalars: number[];
}

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
    const outputs = [value, m, v].map((info) => backend.makeOutput(info.shape, 'float32'));
    const [valueData, gradientData, mData, vData, newValue, newM, newV] = heapViews(backend, [value, gradient, m, v, ...outputs]);
    addon.adam(valueData, gradientData, mData, vData, newValue, newM, newV, Float32Array.from(scalars));
    return outputs;
  };
}
