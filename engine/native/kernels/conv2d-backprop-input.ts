import type * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { convGeometry, type ConvAttrs } from './conv-geometry.js';
import { dataIdNumber, heapViews, type WasmBackend } from './heap.js';
import { attrsOf } from '../kernel-attrs.js';

/** Conv2DBackpropInput: dx of a convolution, from dy and its filter. */
export function makeConv2DBackpropInput(addon: OneDnnAddon, stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const { inputShape } = attrsOf<{ inputShape: [number, number, number, number] }>(args.attrs);
    const geometry = convGeometry(inputShape, filter.shape, attrsOf<ConvAttrs>(args.attrs));
    if (!geometry) return stock(args);
    const dx = backend.makeOutput(inputShape, 'float32');
    const [dyData, filterData, dxData] = heapViews(backend, [dy, filter, dx]);
    addon.conv2dBackpropInput(dyData, filterData, dxData, geometry, dataIdNumber(filter));
    return dx;
  };
}
