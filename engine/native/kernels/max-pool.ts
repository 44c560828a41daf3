import * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { attrsOf } from '../kernel-attrs.js';
import { heapViews, type WasmBackend } from './heap.js';
import { poolDims, pooledShape, type PoolAttrs } from './pool-geometry.js';

/**
 * Where each window of a max pooling took its maximum from (oneDNN's workspace), by the pooled output's
 * data: written by MaxPool while a gradient is being recorded, read by MaxPoolGrad, gone with the output.
 */
const workspaces = new WeakMap<object, Uint8Array>();

/**
 * Workspaces MaxPoolGrad has read, by size, for the next MaxPool: a fresh one is zero-filled and its every page faulted in
 * (~200 pages at 112 px, 12-27 us each on these VMs), every step.
 */
const spentWorkspaces = new Map<number, Uint8Array>();

function workspaceOf(bytes: number): Uint8Array {
  const spent = spentWorkspaces.get(bytes);
  spentWorkspaces.delete(bytes);
  return spent ?? new Uint8Array(bytes);
}

const native = (info: tf.TensorInfo) => info.shape.length === 4 && info.dtype === 'float32';

/** Asks MaxPool to keep its workspace outside tfjs' tape too: for a caller that takes the gradient itself. */
export const KEEP_WORKSPACE = 'keepWorkspace';

/** MaxPool; while tfjs records gradients (or the caller asks), it keeps the argmax of every window for MaxPoolGrad. */
export function makeMaxPool(addon: OneDnnAddon, stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (!native(x)) return stock(args);
    const attrs = attrsOf<PoolAttrs & { [KEEP_WORKSPACE]?: boolean }>(args.attrs);
    const dims = poolDims(x.shape, attrs);
    const y = backend.makeOutput(pooledShape(dims), 'float32');
    const recording = attrs[KEEP_WORKSPACE] === true || (tf.engine().state as { gradientDepth: number }).gradientDepth > 0;
    const workspace = recording ? workspaceOf(addon.maxPoolWorkspaceBytes(dims)) : null;
    const [xData, yData] = heapViews(backend, [x, y]);
    addon.maxPool(xData, yData, workspace, dims);
    if (workspace) workspaces.set(y.dataId, workspace);
    return y;
  };
}

/** MaxPoolGrad from MaxPool's workspace (wasm's own is a scalar loop that costs as much as a ResNet stage's convolutions). */
export function makeMaxPoolGrad(addon: OneDnnAddon, stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { dy, input, output } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo; output: tf.TensorInfo };
    if (!native(input)) return stock(args);
    const dims = poolDims(input.shape, attrsOf<PoolAttrs>(args.attrs));
    const dx = backend.makeOutput(input.shape, 'float32');
    const [dyData, inputData, dxData] = heapViews(backend, [dy, input, dx]);
    const workspace = workspaces.get(output.dataId) ?? null;
    addon.maxPoolGrad(dyData, inputData, dxData, dims, workspace);
    // Read once: the next pooling may fill it (a second gradient of the same output makes its workspace again).
    if (workspace) {
      workspaces.delete(output.dataId);
      spentWorkspaces.set(workspace.byteLength, workspace);
    }
    return dx;
  };
}
