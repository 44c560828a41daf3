import * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { heapViews, type WasmBackend } from './heap.js';

/** A kernel of this project's: tfjs has no ReLU-gradient kernel, its gradient is step, cast and multiply. */
export const RELU_GRAD = 'RetrainReluGrad';

/** A kernel over two float32 inputs of one shape, named `names`, writing an output of that shape with `run`. */
export function pairKernel(
  names: [string, string],
  run: (first: Float32Array, second: Float32Array, out: Float32Array, elements: number) => void,
): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const [first, second] = names.map((name) => args.inputs[name] as tf.TensorInfo);
    const out = backend.makeOutput(second.shape, 'float32');
    const [firstData, secondData, outData] = heapViews(backend, [first, second, out]);
    run(firstData, secondData, outData, outData.length);
    return out;
  };
}

export function makeReluGrad(addon: OneDnnAddon): tf.KernelFunc {
  return pairKernel(['dy', 'x'], (dy, x, dx, elements) => addon.reluGrad(dy, x, dx, elements));
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
