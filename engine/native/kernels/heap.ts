import { existsSync, readFileSync } from 'node:fs';
import type * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';

/** The slice of the wasm backend this project's native kernels use. */
export interface WasmBackend extends tf.KernelBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
  /** How many tensors (and kernel outputs sharing it) hold this data: 1 for a tensor that holds it alone. */
  refCount(dataId: object): number;
  incRef(dataId: object): void;
  /** The emscripten module: its heap is one wasm memory. */
  wasm: { HEAPU8: Uint8Array };
}

/** The most the wasm heap grows to: tfjs' build caps it at 4 GiB - 64 KiB (emscripten's getHeapMax). */
const HEAP_MAX_BYTES = 4 * 1024 ** 3 - 64 * 1024;

/**
 * Asks Linux to back the wasm heap with 2 MiB pages as it grows (where transparent huge pages are on or left to madvise):
 * Adam's and the ReLU masks' passes stream the heap, and with 4 KiB pages they miss the TLB (a 2-core Xeon VM: a 112 px
 * fine-tuning step's time outside oneDNN ~55 -> ~46 ms, inside ~415 -> ~395; on the 2-core EPYC of earlier runs no
 * change beyond the noise). Called before the heap grows: pages touched earlier stay small. Returns 0, or madvise's
 * errno (the advice is only advice: the heap works either way).
 */
export function adviseHugePages(addon: OneDnnAddon, backend: WasmBackend): number {
  return addon.adviseHugePages(backend.wasm.HEAPU8.buffer as ArrayBuffer, HEAP_MAX_BYTES);
}

/** Linux's transparent huge page mode (always; madvise: only where asked, as the heap asks; never), or null where unsaid. */
export function transparentHugePageMode(): string | null {
  const file = '/sys/kernel/mm/transparent_hugepage/enabled';
  return existsSync(file) ? (/\[(\w+)\]/.exec(readFileSync(file, 'utf8'))?.[1] ?? null) : null;
}

/**
 * An output that holds `info`'s data, for a kernel that writes over an input no other tensor reads: one holder more, and
 * a new TensorInfo (the engine would hand back an input tensor object itself as the output).
 */
export function sharedOutput(backend: WasmBackend, info: tf.TensorInfo, shape: number[] = info.shape): tf.TensorInfo {
  backend.incRef(info.dataId);
  return { dataId: info.dataId, shape, dtype: info.dtype };
}

/**
 * Float32 views of tensors in the wasm heap, for the addon to read and write in place. Taken after
 * the outputs are allocated: an allocation can grow the heap, which detaches earlier views.
 */
export function heapViews(backend: WasmBackend, infos: readonly tf.TensorInfo[]): Float32Array[] {
  return infos.map((info) => {
    const view = backend.typedArrayFromHeap(info);
    if (!(view instanceof Float32Array)) throw new Error(`native kernels take float32 tensors, got ${info.dtype}`);
    return view;
  });
}

/** The view of an optional input (a bias, a scale), or null for the addon when there is none. */
export function optionalHeapView(backend: WasmBackend, info: tf.TensorInfo | undefined): Float32Array | null {
  return info ? heapViews(backend, [info])[0] : null;
}

/**
 * Small ids for tensors' data (filters, scales), for the addon's and the model's caches: a tensor whose values change
 * gets new data, so a new id; data written in place (Adam's update) is given a new id by renewDataIdNumber.
 */
const dataIds = new WeakMap<object, number>();
let nextDataId = 1;
export function dataIdNumber(tensor: tf.TensorInfo): number {
  let id = dataIds.get(tensor.dataId);
  if (id === undefined) {
    id = nextDataId++;
    dataIds.set(tensor.dataId, id);
  }
  return id;
}

/** The data of `tensor` was written in place: caches keyed on its old id must not answer for it. */
export function renewDataIdNumber(tensor: tf.TensorInfo): void {
  dataIds.set(tensor.dataId, nextDataId++);
}
