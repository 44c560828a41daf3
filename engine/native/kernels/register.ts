import * as tf from '@tensorflow/tfjs';
import type { Precision } from '../../../schemas/model.js';
import type { OneDnnAddon } from '../onednn.js';
import { ADAM, makeAdam } from './adam.js';
import { makeBatchMatMul } from './batch-mat-mul.js';
import { BATCH_NORM_GRAD, BATCH_NORM_TRAIN, makeBatchNormGrad, makeBatchNormTrain } from './batch-norm.js';
import { makeBinary } from './binary.js';
import { makeAvgPoolGrad, makeMaxPoolGrad } from './max-pool-grad.js';
import { ADD_RELU, makeAddRelu, makeReluGrad, registerReluGradient, RELU_GRAD } from './relu-grad.js';
import { CONV_BACKWARD, makeConvBackward } from './conv-backward.js';
import { makeConv2D, SCALED_CONV } from './conv2d.js';
import { makeConv2DBackpropFilter } from './conv2d-backprop-filter.js';
import { makeConv2DBackpropInput } from './conv2d-backprop-input.js';

/** Each tfjs kernel name and how its native version is made from the kernel it replaces (kept for what it does not cover). */
const NATIVE: Record<string, (addon: OneDnnAddon, stock: tf.KernelFunc) => tf.KernelFunc> = {
  Conv2D: makeConv2D,
  FusedConv2D: makeConv2D,
  Conv2DBackpropInput: makeConv2DBackpropInput,
  Conv2DBackpropFilter: makeConv2DBackpropFilter,
  BatchMatMul: makeBatchMatMul,
  _FusedMatMul: makeBatchMatMul,
  Add: makeBinary('Add'),
  Multiply: makeBinary('Multiply'),
  Sub: makeBinary('Sub'),
  MaxPoolGrad: makeMaxPoolGrad,
  AvgPoolGrad: makeAvgPoolGrad,
};

let registered: OneDnnAddon | null = null;

/** Replaces the wasm backend's kernels with the addon's, once per thread. */
export function registerOneDnnKernels(addon: OneDnnAddon): void {
  if (registered) return;
  for (const [kernelName, make] of Object.entries(NATIVE)) {
    const previous = tf.getKernel(kernelName, 'wasm');
    if (!previous) throw new Error(`the wasm backend has no ${kernelName} kernel to replace`);
    tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: make(addon, previous.kernelFunc) });
  }
  tf.registerKernel({ kernelName: RELU_GRAD, backendName: 'wasm', kernelFunc: makeReluGrad(addon) });
  tf.registerKernel({ kernelName: ADD_RELU, backendName: 'wasm', kernelFunc: makeAddRelu(addon) });
  tf.registerKernel({ kernelName: CONV_BACKWARD, backendName: 'wasm', kernelFunc: makeConvBackward(addon) });
  const unsupported = () => {
    throw new Error(`${SCALED_CONV} takes NHWC tensors and a linear or ReLU activation`);
  };
  tf.registerKernel({ kernelName: SCALED_CONV, backendName: 'wasm', kernelFunc: makeConv2D(addon, unsupported) });
  tf.registerKernel({ kernelName: ADAM, backendName: 'wasm', kernelFunc: makeAdam(addon) });
  tf.registerKernel({ kernelName: BATCH_NORM_TRAIN, backendName: 'wasm', kernelFunc: makeBatchNormTrain(addon) });
  tf.registerKernel({ kernelName: BATCH_NORM_GRAD, backendName: 'wasm', kernelFunc: makeBatchNormGrad(addon) });
  registerReluGradient();
  registered = addon;
}

/** What convolutions read from now on: bf16 only where the oneDNN kernels run and the CPU has AVX512-BF16. */
export function useConvolutionPrecision(precision: Precision): Precision {
  if (!registered || tf.getBackend() !== 'wasm') return 'fp32';
  return registered.setPrecision(precision === 'bf16') ? 'bf16' : 'fp32';
}
