import * as tf from '../tf.js';
import { heapViews, type WasmBackend } from '../native/kernels/heap.js';

/**
 * The float32 values of the tensor `compute` returns, with every tensor it made freed. Not
 * `tf.tidy(() => t.dataSync())`: tidy walks what its function returns in search of tensors, a typed
 * array element by element (about a second per million values).
 */
export function float32ValuesOf(compute: () => tf.Tensor): Float32Array {
  const tensor = tf.tidy(compute);
  try {
    const values = tensor.dataSync();
    if (!(values instanceof Float32Array)) throw new Error(`expected float32 values, got ${tensor.dtype}`);
    return values;
  } finally {
    tensor.dispose();
  }
}

/**
 * Values kept for later batches: float32, or bfloat16 as the top 16 bits of each float32 (all that kernels
 * running in bfloat16 read of them).
 */
export type KeptValues = Float32Array | Uint16Array;

/** `values` rounded to bfloat16 (to nearest, ties to even, as oneDNN's reorders round; NaN stays NaN). */
export function bfloat16Of(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const rounded = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const u = bits[i];
    rounded[i] = (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 0x40 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
  return rounded;
}

/**
 * A float32 tensor of `shape` holding `parts` one after another (bfloat16 parts widened exactly). On wasm
 * they are copied straight into its heap: a batch assembled in a JS array first went to new memory every
 * step, and first touches cost ~13 µs per 4 KiB page on these VMs (a 16-image batch at 224 px: ~30 ms).
 */
export function float32TensorOf(parts: readonly KeptValues[], shape: number[]): tf.Tensor {
  const size = tf.util.sizeFromShape(shape);
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  if (length !== size) throw new Error(`${length} values do not fill a tensor of shape [${shape.join(', ')}]`);
  if (tf.getBackend() !== 'wasm') {
    const values = new Float32Array(size);
    fill(values, parts);
    return tf.tensor(values, shape);
  }
  return heapTensor(shape, (view) => fill(view, parts));
}

/**
 * A new float32 tensor of `shape` in the wasm heap, written by `write` through a view of it; views of other
 * tensors are taken inside `write`, after this allocation (which can grow the heap and detach older views).
 * Freed if `write` throws.
 */
export function heapTensor(shape: number[], write: (view: Float32Array, backend: WasmBackend) => void): tf.Tensor {
  const backend = tf.backend() as WasmBackend;
  const info = backend.makeOutput(shape, 'float32');
  try {
    write(heapViews(backend, [info])[0], backend);
  } catch (error) {
    backend.disposeData(info.dataId);
    throw error;
  }
  return tf.engine().makeTensorFromTensorInfo(info);
}

function fill(target: Float32Array, parts: readonly KeptValues[]): void {
  const bits = new Uint32Array(target.buffer, target.byteOffset, target.length);
  let offset = 0;
  for (const part of parts) {
    if (part instanceof Float32Array) target.set(part, offset);
    else for (let i = 0; i < part.length; i++) bits[offset + i] = part[i] << 16;
    offset += part.length;
  }
}
