import type * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { convGeometry, convOutputShape, type ConvAttrs } from './conv-geometry.js';
import { dataIdNumber, heapViews, optionalHeapView, type WasmBackend } from './heap.js';
import { attrsOf } from '../kernel-attrs.js';

type Activation = 'linear' | 'relu' | 'relu6' | 'prelu' | 'leakyrelu' | 'sigmoid' | 'elu';

/**
 * A kernel of this project's: FusedConv2D whose filter is multiplied per output channel by the input
 * `scale` (a folded BatchNorm's) as the addon reorders it, instead of by a filter-sized tensor op; with
 * the input `residual` (shaped as the output), it is added before the activation (a bottleneck block's end).
 */
export const SCALED_CONV = 'RetrainScaledConv2D';

/**
 * Conv2D, FusedConv2D with an optional bias and a linear or ReLU activation (what tf.layers emits), and
 * the same with a `scale`; `stock` runs what the addon does not cover.
 */
export function makeConv2D(addon: OneDnnAddon, stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs } = args;
    const backend = args.backend as WasmBackend;
    const { x, filter, bias, scale, residual, preluActivationWeights } = inputs as Record<string, tf.TensorInfo | undefined>;
    const activation = (attrs as { activation?: Activation }).activation ?? 'linear';
    const geometry = x && filter && convGeometry(x.shape, filter.shape, attrsOf<ConvAttrs>(attrs));
    if (!x || !filter || !geometry || preluActivationWeights || (activation !== 'linear' && activation !== 'relu')) {
      if (scale || residual) throw new Error(`${SCALED_CONV}: no stock kernel takes a scale or a residual`);
      return stock(args);
    }
    const out = backend.makeOutput(convOutputShape(geometry), 'float32');
    const [xData, filterData, outData] = heapViews(backend, [x, filter, out]);
    const [biasData, scaleData, residualData] = [bias, scale, residual].map((info) => optionalHeapView(backend, info));
    const scaleId = scale ? dataIdNumber(scale) : 0;
    const relu = activation === 'relu';
    addon.conv2d(xData, filterData, biasData, outData, geometry, relu, dataIdNumber(filter), scaleData, scaleId, residualData);
    return out;
  };
}
