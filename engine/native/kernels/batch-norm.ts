import type * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { heapViews, type WasmBackend } from './heap.js';

/** Kernels of this project's: BatchNorm on batch statistics, outputs [y, mean, biased variance], and its gradient, outputs [dx, dGamma, dBeta]. */
export const BATCH_NORM_TRAIN = 'RetrainBatchNormTrain';
export const BATCH_NORM_GRAD = 'RetrainBatchNormGrad';

function nhwc(kernel: string, x: tf.TensorInfo): Int32Array {
  if (x.shape.length !== 4 || x.dtype !== 'float32') throw new Error(`${kernel}: x must be a float32 NHWC tensor, got [${x.shape}]`);
  return Int32Array.from(x.shape);
}

export function makeBatchNormTrain(addon: OneDnnAddon): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { x, gamma, beta } = args.inputs as Record<'x' | 'gamma' | 'beta', tf.TensorInfo>;
    const { epsilon } = args.attrs as { epsilon: number };
    const dims = nhwc(BATCH_NORM_TRAIN, x);
    const channels = [x.shape[3]];
    const outputs = [
      backend.makeOutput(x.shape, 'float32'),
      backend.makeOutput(channels, 'float32'),
      backend.makeOutput(channels, 'float32'),
    ];
    const [xData, gammaData, betaData, y, mean, variance] = heapViews(backend, [x, gamma, beta, ...outputs]);
    addon.batchNormTrain(xData, gammaData, betaData, y, mean, variance, dims, epsilon);
    return outputs;
  };
}

export function makeBatchNormGrad(addon: OneDnnAddon): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { dy, x, mean, variance, gamma } = args.inputs as Record<'dy' | 'x' | 'mean' | 'variance' | 'gamma', tf.TensorInfo>;
    const { epsilon } = args.attrs as { epsilon: number };
    const dims = nhwc(BATCH_NORM_GRAD, x);
    const outputs = [
      backend.makeOutput(x.shape, 'float32'),
      backend.makeOutput(gamma.shape, 'float32'),
      backend.makeOutput(gamma.shape, 'float32'),
    ];
    const views = heapViews(backend, [dy, x, mean, variance, gamma, ...outputs]);
    addon.batchNormGrad(views[0], views[1], views[2], views[3], views[4], views[5], views[6], views[7], dims, epsilon);
    return outputs;
  };
}
