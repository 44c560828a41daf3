import type * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { attrsOf } from '../kernel-attrs.js';
import { heapViews, type WasmBackend } from './heap.js';

/** Below this many values the call costs more than the copy: wasm's own kernel keeps them. */
const MIN_ELEMENTS = 4096;

/** Transpose of float32 tensors as one oneDNN reorder (wasm's took ~0.3 s to put a ResNet-50 in torchvision's layout). */
export function makeTranspose(addon: OneDnnAddon, stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { perm } = attrsOf<{ perm: number[] }>(args.attrs);
    const elements = x.shape.reduce((a, b) => a * b, 1);
    if (x.dtype !== 'float32' || x.shape.length > 6 || elements < MIN_ELEMENTS) return stock(args);
    const out = backend.makeOutput(
      perm.map((axis) => x.shape[axis]),
      'float32',
    );
    const [xData, outData] = heapViews(backend, [x, out]);
    addon.transpose(xData, outData, Int32Array.from(x.shape), Int32Array.from(perm));
    return out;
  };
}
