import * as tf from '@tensorflow/tfjs';

export interface ConvAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dilations?: [number, number] | number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

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
  return Int32Array.from([
    info.batchSize,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.filterHeight,
    info.filterWidth,
    info.outChannels,
    info.outHeight,
    info.outWidth,
    info.strideHeight,
    info.strideWidth,
    info.dilationHeight,
    info.dilationWidth,
    padInfo.top,
    padInfo.left,
    padInfo.bottom,
    padInfo.right,
  ]);
}
