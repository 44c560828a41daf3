import type * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { heapViews, type WasmBackend } from './heap.js';

const KINDS = { Add: 0, Multiply: 1, Sub: 2 } as const;
/** Below this many values the call costs more than wasm's own loop (Adam's scalars, biases). */
const MIN_ELEMENTS = 4096;

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
/** [.., C] against [C] (or [1, 1, 1, C]): BatchNorm's scale and shift, a bias. */
const perChannel = (full: number[], vector: number[]) =>
  vector.length <= full.length && vector.length > 0 && vector.slice(0, -1).every((d) => d === 1) && vector.at(-1) === full.at(-1);

/** Add, Multiply and Sub over large tensors: same shapes, or a per-channel vector; the rest stays wasm's. */
export function makeBinary(kernelName: keyof typeof KINDS) {
  return (addon: OneDnnAddon, stock: tf.KernelFunc): tf.KernelFunc =>
    (args) => {
      const backend = args.backend as WasmBackend;
      let { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      if (a.dtype !== 'float32' || b.dtype !== 'float32') return stock(args);
      if (kernelName !== 'Sub' && size(a.shape) < size(b.shape)) [a, b] = [b, a];
      const elements = size(a.shape);
      const same = a.shape.join() === b.shape.join();
      if (elements < MIN_ELEMENTS || (!same && !perChannel(a.shape, b.shape))) return stock(args);
      const channels = a.shape.at(-1) ?? 1;
      const rows = elements / channels;
      const out = backend.makeOutput(a.shape, 'float32');
      const [aData, bData, outData] = heapViews(backend, [a, b, out]);
      addon.binary(KINDS[kernelName], aData, bData, outData, rows, channels, same ? rows : 1);
      return out;
    };
}
