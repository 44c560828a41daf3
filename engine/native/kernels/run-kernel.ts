import * as tf from '../../tf.js';

/**
 * Runs a registered kernel and returns its outputs as tensors; where nothing records gradients or profiles kernels, without
 * runKernel's bookkeeping (two kernel lookups, scope, leak and environment checks per call): a training step's ~110 kernel
 * calls each run it cache-cold after a convolution. Under a tape or tf.profile, through runKernel, which records the call.
 */
export function runKernelOutputs<T extends tf.Tensor = tf.Tensor>(
  kernelName: string,
  inputs: tf.NamedTensorMap,
  attrs: tf.NamedAttrMap = {},
): T[] {
  const engine = tf.engine();
  const kernel = tf.getKernel(kernelName, engine.backendName);
  if (!kernel || engine.state.gradientDepth > 0 || engine.state.profiling || engine.ENV.getBool('DEBUG')) {
    const outputs = engine.runKernel(kernelName, inputs, attrs);
    return (Array.isArray(outputs) ? outputs : [outputs]) as T[];
  }
  const outputs = kernel.kernelFunc({ inputs, attrs, backend: engine.backend });
  return (Array.isArray(outputs) ? outputs : [outputs]).map((info) => engine.makeTensorFromTensorInfo(info) as T);
}
