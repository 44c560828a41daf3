import * as tf from '@tensorflow/tfjs';
import type { OneDnnAddon } from '../onednn.js';
import { heapViews, type WasmBackend } from './heap.js';
import { attrsOf } from '../kernel-attrs.js';

interface PoolAttrs {
  filterSize: [number, number] | number;
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** [N,H,W,C, OH,OW, KH,KW, SH,SW, PT,PL,PB,PR] of a 2-D pooling, by tfjs' own arithmetic. */
function poolDims(input: tf.TensorInfo, attrs: PoolAttrs): Int32Array {
  const { filterSize, strides, pad, dimRoundingMode } = attrs;
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    filterSize,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const { padInfo } = info;
  return Int32Array.from([
    ...input.shape,
    info.outHeight,
    info.outWidth,
    info.filterHeight,
    info.filterWidth,
    info.strideHeight,
    info.strideWidth,
    padInfo.top,
    padInfo.left,
    padInfo.bottom,
    padInfo.right,
  ]);
}

/** A pooling gradient natively for 4-D float32 inputs, `stock` otherwise; `run` gets dy, the input, dx and the dims. */
function poolGradKernel(
  stock: tf.KernelFunc,
  run: (dy: Float32Array, input: Float32Array, dx: Float32Array, dims: Int32Array) => void,
): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
    if (input.shape.length !== 4 || input.dtype !== 'float32') return stock(args);
    const dims = poolDims(input, attrsOf<PoolAttrs>(args.attrs));
    const dx = backend.makeOutput(input.shape, 'float32');
    const [dyData, inputData, dxData] = heapViews(backend, [dy, input, dx]);
    run(dyData, inputData, dxData, dims);
    return dx;
  };
}

/** MaxPoolGrad (wasm's own is a scalar loop that costs as much as a ResNet stage's convolutions). */
export function makeMaxPoolGrad(addon: OneDnnAddon, stock: tf.KernelFunc): tf.KernelFunc {
  return poolGradKernel(stock, (dy, input, dx, dims) => addon.maxPoolGrad(dy, input, dx, dims));
}

/** AvgPoolGrad (wasm's own took 15-20 ms for the global pool of one fine-tuning step); it needs no input values. */
export function makeAvgPoolGrad(addon: OneDnnAddon, stock: tf.KernelFunc): tf.KernelFunc {
  return poolGradKernel(stock, (dy, _input, dx, dims) => addon.avgPoolGrad(dy, dx, dims));
}
