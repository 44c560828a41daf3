import * as tf from '../tf.js';

type WasmBackend = tf.KernelBackend & {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): tf.TypedArray;
};

/**
 * Slice on wasm first copies the whole input out of the heap (readSync), then the slice: a training step's slice of a
 * batch of 224 px images (8 of 16) cost ~6 ms. A slice that is one run of the input's memory (a range along the first
 * axis, as a step's slices are) copies just that run, heap to heap; any other slice runs wasm's own kernel.
 */
function heapSlice(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs } = args;
    const backend = args.backend as WasmBackend;
    const { x } = inputs as { x: tf.TensorInfo };
    const { begin, size } = attrs as unknown as { begin: number[]; size: number[] };
    const [start, extent] = tf.slice_util.parseSliceParams(x, begin, size);
    if (x.dtype === 'string' || !tf.slice_util.isSliceContinous(x.shape, start, extent)) return stock(args);
    const out = backend.makeOutput(extent, x.dtype);
    const offset = tf.slice_util.computeFlatOffset(start, tf.util.computeStrides(x.shape));
    // Views after the allocation: it can grow the heap, which detaches earlier views.
    const from = backend.typedArrayFromHeap(x);
    backend.typedArrayFromHeap(out).set(from.subarray(offset, offset + tf.util.sizeFromShape(extent)));
    return out;
  };
}

let registered = false;

export function registerHeapSlice(): void {
  if (registered) return;
  const stock = tf.getKernel('Slice', 'wasm')?.kernelFunc;
  if (!stock) throw new Error('the wasm backend has no Slice kernel to replace');
  tf.unregisterKernel('Slice', 'wasm');
  tf.registerKernel({ kernelName: 'Slice', backendName: 'wasm', kernelFunc: heapSlice(stock) });
  registered = true;
}
