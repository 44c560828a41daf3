import * as tf from '../../tf.js';
import { packedFields } from './packed-fields.js';

export interface ConvAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dilations?: [number, number] | number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** A convolution's geometry, in the order ConvGeometry::From (conv.cc) reads it. */
const GEOMETRY = packedFields(['n', 'h', 'w', 'c', 'kh', 'kw', 'o', 'oh', 'ow', 'sh', 'sw', 'dh', 'dw', 'pt', 'pl', 'pb', 'pr']);

/** Geometries already worked out, by shapes and attributes: a training step asks for the same ~100 every step. */
const geometries = new Map<string, Int32Array | null>();
const KEPT_GEOMETRIES = 4096;

/**
 * tfjs' own arithmetic for a convolution, flattened for the addon; null where the addon does not apply (NCHW). Shared
 * between calls: read only.
 */
export function convGeometry(xShape: number[], filterShape: number[], attrs: ConvAttrs): Int32Array | null {
  const { strides, pad, dataFormat, dilations = 1, dimRoundingMode } = attrs;
  const key = `${xShape}|${filterShape}|${strides}|${typeof pad === 'object' ? pad.flat() : pad}|${dataFormat}|${dilations}|${dimRoundingMode}`;
  const known = geometries.get(key);
  if (known !== undefined) return known;
  if (geometries.size >= KEPT_GEOMETRIES) geometries.clear();
  const geometry = dataFormat === 'NCHW' ? null : workedOut(xShape, filterShape, attrs);
  geometries.set(key, geometry);
  return geometry;
}

function workedOut(xShape: number[], filterShape: number[], attrs: ConvAttrs): Int32Array {
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    attrs.dilations ?? 1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  return GEOMETRY.pack({ ...windowFields(info), o: info.outChannels, dh: info.dilationHeight, dw: info.dilationWidth });
}

/** What a convolution and a pooling share, by the addon's names: the input, the output's size, the window, strides and padding. */
export function windowFields(info: tf.backend_util.Conv2DInfo) {
  const { padInfo } = info;
  return {
    n: info.batchSize,
    h: info.inHeight,
    w: info.inWidth,
    c: info.inChannels,
    oh: info.outHeight,
    ow: info.outWidth,
    kh: info.filterHeight,
    kw: info.filterWidth,
    sh: info.strideHeight,
    sw: info.strideWidth,
    pt: padInfo.top,
    pl: padInfo.left,
    pb: padInfo.bottom,
    pr: padInfo.right,
  };
}

/** The NHWC shape a convolution of this geometry writes. */
export function convOutputShape(geometry: Int32Array): [number, number, number, number] {
  const at = (field: 'n' | 'oh' | 'ow' | 'o') => GEOMETRY.read(geometry, field);
  return [at('n'), at('oh'), at('ow'), at('o')];
}
