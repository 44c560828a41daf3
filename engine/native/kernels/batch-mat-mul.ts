import type * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { heapViews, optionalHeapView, type WasmBackend } from './heap.js';

/** BatchMatMul, and _FusedMatMul with an optional bias and a linear or ReLU activation (tf.layers' dense). */
export function makeBatchMatMul(addon: OneDnnAddon, stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const {
      transposeA,
      transposeB,
      activation = 'linear',
    } = args.attrs as { transposeA: boolean; transposeB: boolean; activation?: string };
    if (!a || !b || preluActivationWeights || (activation !== 'linear' && activation !== 'relu')) return stock(args);
    if (a.shape.length < 2 || a.shape.length !== b.shape.length || (bias && bias.shape.length !== 1)) return stock(args);
    const batchA = a.shape.slice(0, -2).reduce((x, y) => x * y, 1);
    const batchB = b.shape.slice(0, -2).reduce((x, y) => x * y, 1);
    // Broadcasting batches: the stock kernel's job.
    if (batchA !== batchB || a.shape.slice(0, -2).join() !== b.shape.slice(0, -2).join()) return stock(args);
    const [aRows, aCols] = a.shape.slice(-2);
    const [bRows, bCols] = b.shape.slice(-2);
    const [m, k] = transposeA ? [aCols, aRows] : [aRows, aCols];
    const n = transposeB ? bRows : bCols;
    if ((transposeB ? bCols : bRows) !== k) return stock(args);
    const out = backend.makeOutput([...a.shape.slice(0, -2), m, n], 'float32');
    const [aData, bData, outData] = heapViews(backend, [a, b, out]);
    addon.matMul(
      aData,
      bData,
      optionalHeapView(backend, bias),
      outData,
      Int32Array.from([batchA, m, k, n, +transposeA, +transposeB]),
      activation === 'relu',
    );
    return out;
  };
}
