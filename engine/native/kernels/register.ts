import * as tf from '../../tf.js';
import type { Precision } from '../../../schemas/model.js';
import type { OneDnnAddon } from '../onednn.js';
import { ADD_RELU, makeAddRelu } from './add-relu.js';
import { makeAvgPoolGrad } from './avg-pool-grad.js';
import { makeBatchMatMul } from './batch-mat-mul.js';
import { BATCH_NORM_GRAD, BATCH_NORM_TRAIN, makeBatchNormGrad, makeBatchNormTrain } from './batch-norm.js';
import { makeBinary } from './binary.js';
import { CONV_BACKWARD, makeConvBackward } from './conv-backward.js';
import { makeConv2D, SCALED_CONV } from './conv2d.js';
import { makeConv2DBackpropFilter } from './conv2d-backprop-filter.js';
import { makeConv2DBackpropInput } from './conv2d-backprop-input.js';
import { makeMaxPool, makeMaxPoolGrad } from './max-pool.js';
import { makeReluGrad, registerReluGradient, RELU_GRAD } from './relu-grad.js';
import { makeTranspose } from './transpose.js';

/**
 * Every kernel the addon runs, by name, and how it is made. A tfjs kernel's name replaces the wasm
 * backend's own, which the native one keeps as `stock` for what it does not cover; our own kernels
 * (Retrain*) have no stock: asked for what they do not cover, they say so.
 */
const KERNELS: Record<string, (addon: OneDnnAddon, stock: tf.KernelFunc) => tf.KernelFunc> = {
  Conv2D: makeConv2D,
  FusedConv2D: makeConv2D,
  Conv2DBackpropInput: makeConv2DBackpropInput,
  Conv2DBackpropFilter: makeConv2DBackpropFilter,
  BatchMatMul: makeBatchMatMul,
  _FusedMatMul: makeBatchMatMul,
  Add: makeBinary('Add'),
  Multiply: makeBinary('Multiply'),
  Sub: makeBinary('Sub'),
  MaxPool: makeMaxPool,
  MaxPoolGrad: makeMaxPoolGrad,
  AvgPoolGrad: makeAvgPoolGrad,
  Transpose: makeTranspose,
  [SCALED_CONV]: makeConv2D,
  [CONV_BACKWARD]: makeConvBackward,
  [RELU_GRAD]: makeReluGrad,
  [ADD_RELU]: makeAddRelu,
  [BATCH_NORM_TRAIN]: makeBatchNormTrain,
  [BATCH_NORM_GRAD]: makeBatchNormGrad,
};

const OURS = /^Retrain/;

let registered: OneDnnAddon | null = null;

/** Registers the addon's kernels on the wasm backend (and ReLU's one-pass gradient), once per thread. */
export function registerOneDnnKernels(addon: OneDnnAddon): void {
  if (registered) return;
  for (const [kernelName, make] of Object.entries(KERNELS)) {
    const stock = OURS.test(kernelName) ? uncovered(kernelName) : tf.getKernel(kernelName, 'wasm')?.kernelFunc;
    if (!stock) throw new Error(`the wasm backend has no ${kernelName} kernel to replace`);
    if (!OURS.test(kernelName)) tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: make(addon, stock) });
  }
  registerReluGradient();
  registered = addon;
}

function uncovered(kernelName: string): tf.KernelFunc {
  return () => {
    throw new Error(`${kernelName} is ours, with no wasm fallback: it takes NHWC float32 tensors and a linear or ReLU activation`);
  };
}

/** The addon whose kernels this thread's tfjs runs, if it does. */
export function registeredOneDnn(): OneDnnAddon | null {
  return registered && tf.getBackend() === 'wasm' ? registered : null;
}

/** What convolutions read from now on: bf16 only where the oneDNN kernels run and the CPU has AVX512-BF16. */
export function useConvolutionPrecision(precision: Precision): Precision {
  if (!registered || tf.getBackend() !== 'wasm') return 'fp32';
  return registered.setPrecision(precision === 'bf16') ? 'bf16' : 'fp32';
}
