import * as tf from '../../tf.js';
import type { OneDnnAddon } from '../onednn.js';
import { convGeometry, type ConvAttrs } from './conv-geometry.js';
import { dataIdNumber, heapViews, optionalHeapView, sharedOutput, type WasmBackend } from './heap.js';
import { attrMap, attrsOf } from '../kernel-attrs.js';
import { runKernelOutputs } from './run-kernel.js';

/**
 * A kernel of this project's: a convolution's backward pass, through its ReLU when `relu`; outputs [dz?, dx?, dFilter?],
 * dz (when `outputGradient`, with `relu`) the gradient at the ReLU's input, which a residual sum's other operand takes.
 * With the input `scale`, the convolution ran filter * scale per output channel (SCALED_CONV), and dFilter is the filter's own.
 * With the input `addend` (x's shape), dx is addend + the input gradient, written over the addend's data: the caller
 * hands over a tensor nothing else reads (a gradient of x from a later reader), and tfjs' sum of the two, a pass of its own,
 * is saved. Through ReLU, dy's data, where no other tensor holds it, takes the gradient at the ReLU's input (dz shares it).
 */
export const CONV_BACKWARD = 'RetrainConvBackward';

export interface ConvBackwardAttrs extends ConvAttrs {
  relu: boolean;
  /** Also output the gradient at the ReLU's input (needs `relu`). */
  outputGradient?: boolean;
  inputGradient: boolean;
  filterGradient: boolean;
}

/** Filter gradients written by this kernel with dead taps: the taps they may be nonzero at, [top, rows, left, columns]. */
const liveTaps = new WeakMap<tf.DataId, Int32Array>();

/** The taps `gradient` can be nonzero at, when this kernel wrote it as it is and some taps read only padding. */
export function liveTapsOf(gradient: tf.TensorInfo): Int32Array | null {
  return liveTaps.get(gradient.dataId) ?? null;
}

export function makeConvBackward(addon: OneDnnAddon): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { dy, y, x, filter, scale, addend } = args.inputs as Record<'dy' | 'y' | 'x' | 'filter', tf.TensorInfo> &
      Partial<Record<'scale' | 'addend', tf.TensorInfo>>;
    const attrs = attrsOf<ConvBackwardAttrs>(args.attrs);
    const geometry = convGeometry(x.shape, filter.shape, attrs);
    if (!geometry) throw new Error(`${CONV_BACKWARD} takes NHWC tensors`);
    if (attrs.outputGradient && !attrs.relu) throw new Error(`${CONV_BACKWARD}: outputGradient needs relu`);
    if (addend && (!attrs.inputGradient || !tf.util.arraysEqual(addend.shape, x.shape))) {
      throw new Error(`${CONV_BACKWARD}: an addend needs the input gradient, and x's shape`);
    }
    const made = (wanted: boolean | undefined, shape: number[]) => (wanted ? backend.makeOutput(shape, 'float32') : undefined);
    // tfjs hands a gradient to the one backward pass that reads it: data no other tensor holds may take the ReLU's gradient.
    const dyWritable = attrs.relu && backend.refCount(dy.dataId) === 1;
    const dzInfo = dyWritable && attrs.outputGradient ? sharedOutput(backend, dy) : made(attrs.outputGradient, dy.shape);
    const dxInfo = addend ? sharedOutput(backend, addend, x.shape) : made(attrs.inputGradient, x.shape);
    const dFilterInfo = made(attrs.filterGradient, filter.shape);
    const outputs = [dzInfo, dxInfo, dFilterInfo].filter((info): info is tf.TensorInfo => info !== undefined);
    const [dyData, yData, xData, filterData] = heapViews(backend, [dy, y, x, filter]);
    const [dz, dx, dFilter, scaleData] = [dzInfo, dxInfo, dFilterInfo, scale].map((info) => optionalHeapView(backend, info));
    const scaleId = scale ? dataIdNumber(scale) : 0;
    const live = addon.convBackward(
      dyData,
      attrs.relu ? yData : null,
      xData,
      filterData,
      dx,
      dFilter,
      geometry,
      dataIdNumber(filter),
      scaleData,
      scaleId,
      dz,
      addend !== undefined,
      dyWritable,
    );
    if (live && dFilterInfo) liveTaps.set(dFilterInfo.dataId, live);
    return outputs;
  };
}

/** The gradients a convolution (then ReLU if `relu`) passes back, in one native call where the backend has it. */
export function nativeConvBackward(
  inputs: { dy: tf.Tensor4D; y: tf.Tensor4D; x: tf.Tensor4D; filter: tf.Tensor4D; scale?: tf.Tensor1D; addend?: tf.Tensor4D },
  attrs: ConvBackwardAttrs,
): tf.Tensor[] | null {
  if (!tf.getKernel(CONV_BACKWARD, tf.getBackend())) return null;
  return runKernelOutputs(CONV_BACKWARD, inputs, attrMap(attrs));
}
