import * as tf from '../tf.js';

type WasmBackend = tf.KernelBackend & { incRef(dataId: object): void };

/**
 * Identity on wasm copies the tensor's bytes; tfjs calls it for every tensor a gradient keeps (about a
 * thousand per ResNet-50 step). Tensors are immutable, so sharing the data, as Reshape does, is enough.
 */
function sharedIdentity({ inputs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x } = inputs as { x: tf.TensorInfo };
  if (x.dtype === 'string') throw new Error('Identity of strings is not needed here');
  (backend as WasmBackend).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

let registered = false;

export function registerSharedIdentity(): void {
  if (registered) return;
  tf.unregisterKernel('Identity', 'wasm');
  tf.registerKernel({ kernelName: 'Identity', backendName: 'wasm', kernelFunc: sharedIdentity });
  registered = true;
}
