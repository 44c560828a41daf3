import * as tf from '../../tf.js';
import { windowFields } from './conv-geometry.js';
import { packedFields } from './packed-fields.js';

export interface PoolAttrs {
  filterSize: [number, number] | number;
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** A pooling's dims, in the order PoolShape::From (pooling.cc) reads them. */
const DIMS = packedFields(['n', 'h', 'w', 'c', 'oh', 'ow', 'kh', 'kw', 'sh', 'sw', 'pt', 'pl', 'pb', 'pr']);

/** tfjs' own arithmetic for a 2-D pooling of an NHWC input, flattened for the addon. */
export function poolDims(inputShape: number[], attrs: PoolAttrs): Int32Array {
  const { filterSize, strides, pad, dimRoundingMode } = attrs;
  const info = tf.backend_util.computePool2DInfo(
    inputShape as [number, number, number, number],
    filterSize,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  return DIMS.pack(windowFields(info));
}

/** The NHWC shape a pooling with these dims writes. */
export function pooledShape(dims: Int32Array): [number, number, number, number] {
  const at = (field: 'n' | 'oh' | 'ow' | 'c') => DIMS.read(dims, field);
  return [at('n'), at('oh'), at('ow'), at('c')];
}
