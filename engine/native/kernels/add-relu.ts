import * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { pairKernel, reluBackward } from './relu-grad.js';

/** A kernel of this project's: relu(a + b) of two tensors of one shape, in one pass. */
export const ADD_RELU = 'RetrainAddRelu';

export function makeAddRelu(addon: OneDnnAddon): tf.KernelFunc {
  return pairKernel(['a', 'b'], (a, b, out, elements) => addon.addRelu(a, b, out, elements));
}

/** relu(a + b), whose gradient reaches both a and b; one native pass each way where the backend has the kernels. */
export function addRelu(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const native = tf.getKernel(ADD_RELU, tf.getBackend()) !== undefined && a.dtype === 'float32' && tf.util.arraysEqual(a.shape, b.shape);
  if (!native) return tf.relu(tf.add(a, b));
  const withGradient = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[2] as tf.GradSaveFunc;
    const out = tf.engine().runKernel<tf.Tensor>(ADD_RELU, { a, b });
    save([out]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], [saved]: tf.Tensor[]) => {
        if (Array.isArray(dy)) throw new Error('addRelu has one output');
        const dz = reluBackward(dy, saved);
        return [dz, dz.clone()];
      },
    };
  });
  return withGradient(a, b);
}
