import type * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { attrsOf } from '../kernel-attrs.js';
import { heapViews, type WasmBackend } from './heap.js';
import { poolDims, type PoolAttrs } from './pool-geometry.js';

/** AvgPoolGrad (wasm's own took 15-20 ms for the global pool of one fine-tuning step); it needs no input values. */
export function makeAvgPoolGrad(addon: OneDnnAddon, stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
    if (input.shape.length !== 4 || input.dtype !== 'float32') return stock(args);
    const dims = poolDims(input.shape, attrsOf<PoolAttrs>(args.attrs));
    const dx = backend.makeOutput(input.shape, 'float32');
    const [dyData, dxData] = heapViews(backend, [dy, dx]);
    addon.avgPoolGrad(dyData, dxData, dims);
    return dx;
  };
}
