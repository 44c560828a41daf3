import type * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { convGeometry, type ConvAttrs } from './conv-geometry.js';
import { heapViews, type WasmBackend } from './heap.js';
import { attrsOf } from '../kernel-attrs.js';

/** Conv2DBackpropFilter: the filter gradient of a convolution, from x and dy. */
export function makeConv2DBackpropFilter(addon: OneDnnAddon, stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const { filterShape } = attrsOf<{ filterShape: [number, number, number, number] }>(args.attrs);
    const geometry = convGeometry(x.shape, filterShape, attrsOf<ConvAttrs>(args.attrs));
    if (!geometry) return stock(args);
    const dFilter = backend.makeOutput(filterShape, 'float32');
    const [xData, dyData, dFilterData] = heapViews(backend, [x, dy, dFilter]);
    addon.conv2dBackpropFilter(xData, dyData, dFilterData, geometry);
    return dFilter;
  };
}
