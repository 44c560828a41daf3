import * as tf from '@tensorflow/tfjs';
import type { OneDnnAddon } from '../onednn.js';
import { heapViews, type WasmBackend } from './heap.js';

/** A kernel of this project's: tfjs has no ReLU-gradient kernel, its gradient is step, cast and multiply. */
export const RELU_GRAD = 'RetrainReluGrad';

export function makeReluGrad(addon: OneDnnAddon): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { dy, x } = args.inputs as { dy: tf.TensorInfo; x: tf.TensorInfo };
    const dx = backend.makeOutput(x.shape, 'float32');
    const [dyData, xData, dxData] = heapViews(backend, [dy, x, dx]);
    addon.reluGrad(dyData, xData, dxData, xData.length);
    return dx;
  };
}

/** A kernel of this project's: relu(a + b) of two tensors of one shape, in one pass. */
export const ADD_RELU = 'RetrainAddRelu';

export function makeAddRelu(addon: OneDnnAddon): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const out = backend.makeOutput(a.shape, 'float32');
    const [aData, bData, outData] = heapViews(backend, [a, b, out]);
    addon.addRelu(aData, bData, outData, outData.length);
    return out;
  };
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

/**
 * ReLU's gradient in one pass where this backend has the kernel, tfjs' own formula elsewhere (the
 * gradient registry is shared by every backend, so it must serve them all).
 */
export function registerReluGradient(): void {
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      if (Array.isArray(dy)) throw new Error('Relu has one output');
      const [x] = saved;
      return { x: () => reluBackward(dy, x) };
    },
  });
}

/** dy where x > 0, else 0: one native pass where the backend has the kernel. */
export function reluBackward(dy: tf.Tensor, x: tf.Tensor): tf.Tensor {
  const native = tf.getKernel(RELU_GRAD, tf.getBackend()) !== undefined && x.dtype === 'float32';
  return native ? tf.engine().runKernel<tf.Tensor>(RELU_GRAD, { dy, x }) : tf.mul(dy, tf.cast(tf.step(x), 'float32'));
}
