import * as tf from '@tensorflow/tfjs';

export interface ConvAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dilations?: [number, number] | number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** Where the addon reads each field of a convolution's geometry (ConvGeometry::From in conv.cc reads this order). */
const FIELDS = ['n', 'h', 'w', 'c', 'kh', 'kw', 'o', 'oh', 'ow', 'sh', 'sw', 'dh', 'dw', 'pt', 'pl', 'pb', 'pr'] as const;

/** tfjs' own arithmetic for a convolution, flattened for the addon; null where the addon does not apply (NCHW). */
export function convGeometry(xShape: number[], filterShape: number[], attrs: ConvAttrs): Int32Array | null {
  if (attrs.dataFormat === 'NCHW') return null;
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    attrs.dilations ?? 1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const { padInfo } = info;
  const fields: Record<(typeof FIELDS)[number], number> = {
    n: info.batchSize,
    h: info.inHeight,
    w: info.inWidth,
    c: info.inChannels,
    kh: info.filterHeight,
    kw: info.filterWidth,
    o: info.outChannels,
    oh: info.outHeight,
    ow: info.outWidth,
    sh: info.strideHeight,
    sw: info.strideWidth,
    dh: info.dilationHeight,
    dw: info.dilationWidth,
    pt: padInfo.top,
    pl: padInfo.left,
    pb: padInfo.bottom,
    pr: padInfo.right,
  };
  return Int32Array.from(FIELDS.map((field) => fields[field]));
}

/** The NHWC shape a convolution of this geometry writes. */
export function convOutputShape(geometry: Int32Array): [number, number, number, number] {
  const at = (field: (typeof FIELDS)[number]) => geometry[FIELDS.indexOf(field)];
  return [at('n'), at('oh'), at('ow'), at('o')];
}
