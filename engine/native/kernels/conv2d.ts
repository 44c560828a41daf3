import type * as tf from '@tensorflow/tfjs';
import type { OneDnnAddon } from '../onednn.js';
import { convGeometry, type ConvAttrs } from './conv-geometry.js';
import { filterIdOf, heapViews, type WasmBackend } from './heap.js';
import { attrsOf } from '../../backend/kernel-attrs.js';

type Activation = 'linear' | 'relu' | 'relu6' | 'prelu' | 'leakyrelu' | 'sigmoid' | 'elu';

/** Conv2D, and FusedConv2D with an optional bias and a linear or ReLU activation (what tf.layers emits). */
export function makeConv2D(addon: OneDnnAddon, stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs } = args;
    const backend = args.backend as WasmBackend;
    const { x, filter, bias, preluActivationWeights } = inputs as Record<string, tf.TensorInfo | undefined>;
    const activation = (attrs as { activation?: Activation }).activation ?? 'linear';
    if (!x || !filter || preluActivationWeights || (activation !== 'linear' && activation !== 'relu')) return stock(args);
    const geometry = convGeometry(x.shape, filter.shape, attrsOf<ConvAttrs>(attrs));
    if (!geometry) return stock(args);
    const out = backend.makeOutput([geometry[0], geometry[7], geometry[8], geometry[6]], 'float32');
    const [xData, filterData, outData, biasData] = heapViews(backend, bias ? [x, filter, out, bias] : [x, filter, out]);
    addon.conv2d(xData, filterData, biasData ?? null, outData, geometry, activation === 'relu', filterIdOf(filter));
    return out;
  };
}
