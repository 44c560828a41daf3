import * as tf from '@tensorflow/tfjs';

export interface PoolAttrs {
  filterSize: [number, number] | number;
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** Where the addon reads each field of a pooling's dims (PoolShape::From in pooling.cc reads this order). */
const FIELDS = ['n', 'h', 'w', 'c', 'outHeight', 'outWidth', 'kh', 'kw', 'sh', 'sw', 'pt', 'pl', 'pb', 'pr'] as const;

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
  const { padInfo } = info;
  const fields: Record<(typeof FIELDS)[number], number> = {
    n: info.batchSize,
    h: info.inHeight,
    w: info.inWidth,
    c: info.inChannels,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    kh: info.filterHeight,
    kw: info.filterWidth,
    sh: info.strideHeight,
    sw: info.strideWidth,
    pt: padInfo.top,
    pl: padInfo.left,
    pb: padInfo.bottom,
    pr: padInfo.right,
  };
  return Int32Array.from(FIELDS.map((field) => fields[field]));
}

/** The NHWC shape a pooling with these dims writes. */
export function pooledShape(dims: Int32Array): [number, number, number, number] {
  const at = (field: (typeof FIELDS)[number]) => dims[FIELDS.indexOf(field)];
  return [at('n'), at('outHeight'), at('outWidth'), at('c')];
}
