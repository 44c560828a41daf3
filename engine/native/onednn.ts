import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/** A backbone made by int8Network (int8, bf16 or f32): its filters and, per input shape, its primitives and buffers. */
export interface Int8Handle {
  readonly __int8Network: unique symbol;
}

/** A convolution's filter as an int8 network runs it. */
export interface QuantizedConv {
  filter: Int8Array;
  scales: Float32Array;
  bias: Float32Array;
}

/** One tensor of an int8 network: real value = stored value * scale. */
export interface Int8TensorSpec {
  /** bf16 and f32 tensors have scale 1. */
  type: 'u8' | 's8' | 'bf16' | 'f32';
  scale: number;
  channels: number;
}

/**
 * One op of an int8 network, by tensor index: a convolution of a folded float filter (HWIO; quantised
 * per output channel by the addon) and bias, with the residual `sum` tensor added before the ReLU; the
 * stem's 3x3 stride-2 max pool; or a float tensor rounded to a u8/s8 one.
 */
export type Int8OpSpec =
  | {
      kind: 'conv';
      /** The module's path, for the caller's bookkeeping (the addon ignores it). */
      name?: string;
      src: number;
      dst: number;
      sum?: number;
      kernel: number;
      stride: number;
      pad: number;
      relu: boolean;
      filter: Float32Array;
      bias: Float32Array;
      /** The input's mean per channel: the bias then makes up for the rounded filter's expected error. */
      inputMean?: Float32Array;
    }
  | { kind: 'maxpool'; src: number; dst: number }
  | { kind: 'quantize'; src: number; dst: number };

/** The addon's functions: each reads and writes the Float32Array views it is given, in place. */
export interface OneDnnAddon {
  /** Tensor 0 is the input (quantised from float); the last is the output. */
  int8Network(spec: { tensors: Int8TensorSpec[]; ops: Int8OpSpec[] }): Int8Handle;
  /** The network on float NHWC input (dims [N,H,W,C]): `out` gets the last tensor as floats, averaged over its pixels when `pool`. */
  int8Run(network: Int8Handle, input: Float32Array, dims: Int32Array, out: Float32Array, pool: boolean): void;
  /** Per op: a convolution's s8 filter (HWIO), its scale per output channel and its bias as the network runs them; null for other ops. */
  int8Weights(network: Int8Handle): Array<QuantizedConv | null>;
  /** [height, width, channels] of the network's last tensor for an input of height x width. */
  int8OutputShape(network: Int8Handle, height: number, width: number): Int32Array;
  version(): string;
  /** Seconds spent inside oneDNN's primitives on this thread so far (the rest of a step is ours and tfjs'). */
  primitiveSeconds(): number;
  /** oneDNN primitives (reorders included) run on this thread so far. */
  primitiveRuns(): number;
  /** BatchNorm on batch statistics: y, and the batch mean and biased variance; dims [N, H, W, C]. */
  batchNormTrain(
    x: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    y: Float32Array,
    mean: Float32Array,
    variance: Float32Array,
    dims: Int32Array,
    epsilon: number,
  ): void;
  /** Its gradient, through the batch statistics too. */
  batchNormGrad(
    dy: Float32Array,
    x: Float32Array,
    mean: Float32Array,
    variance: Float32Array,
    gamma: Float32Array,
    dx: Float32Array,
    dGamma: Float32Array,
    dBeta: Float32Array,
    dims: Int32Array,
    epsilon: number,
  ): void;
  /** Convolutions in bfloat16 (true) or float32; answers whether bfloat16 is now on (it needs AVX512-BF16). */
  setPrecision(bf16: boolean): boolean;
  /**
   * With `scale`, the filter multiplied by it per output channel (a folded BatchNorm's scale). Ids name the filter's and
   * the scale's data for the addon's cache of reordered filters (0: not to be kept). With `residual` (shaped as out),
   * out = (relu of) the convolution + bias + residual: a bottleneck block's sum in the convolution's epilogue.
   */
  conv2d(
    x: Float32Array,
    filter: Float32Array,
    bias: Float32Array | null,
    out: Float32Array,
    geometry: Int32Array,
    relu: boolean,
    filterId: number,
    scale: Float32Array | null,
    scaleId: number,
    residual: Float32Array | null,
  ): void;
  conv2dBackpropInput(dy: Float32Array, filter: Float32Array, dx: Float32Array, geometry: Int32Array, filterId: number): void;
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dFilter: Float32Array, geometry: Int32Array): void;
  /**
   * A convolution's gradients from dy, through ReLU when y (its output) is given; each output when not null.
   * With `scale`, the convolution's filter was scaled by it (conv2d's `scale`); dFilter is the unscaled filter's. Ids as conv2d's.
   * Returns the taps dFilter is not 0 at, [top, rows, left, columns], where the others read only padding; else null.
   * `dz` (with y) gets the gradient at the ReLU's input, as a residual sum's other operand takes it. With `accumulate`,
   * the input gradient is added to what dx holds. With `dyWritable`, dy's data may be written over (dz may then be dy).
   */
  convBackward(
    dy: Float32Array,
    y: Float32Array | null,
    x: Float32Array,
    filter: Float32Array,
    dx: Float32Array | null,
    dFilter: Float32Array | null,
    geometry: Int32Array,
    filterId: number,
    scale: Float32Array | null,
    scaleId: number,
    dz: Float32Array | null,
    accumulate: boolean,
    dyWritable: boolean,
  ): Int32Array | null;
  /** Asks Linux for 2 MiB pages over [memory's start, + bytes) as they are touched: 0, or madvise's errno. */
  adviseHugePages(memory: ArrayBuffer, bytes: number): number;
  matMul(a: Float32Array, b: Float32Array, bias: Float32Array | null, out: Float32Array, dims: Int32Array, relu: boolean): void;
  /** kind 0 add, 1 multiply, 2 subtract; a [rows, channels], b [bRows, channels] with bRows 1 or rows. */
  binary(kind: number, a: Float32Array, b: Float32Array, out: Float32Array, rows: number, channels: number, bRows: number): void;
  addRelu(a: Float32Array, b: Float32Array, out: Float32Array, elements: number): void;
  reluGrad(dy: Float32Array, x: Float32Array, dx: Float32Array, elements: number): void;
  /** Pooling dims [N,H,W,C, OH,OW, KH,KW, SH,SW, PT,PL,PB,PR]; with a workspace, maxPool records each window's argmax there. */
  maxPool(x: Float32Array, y: Float32Array, workspace: Uint8Array | null, dims: Int32Array): void;
  maxPoolWorkspaceBytes(dims: Int32Array): number;
  /** From maxPool's workspace; without one, the forward pooling runs again to make it. */
  maxPoolGrad(dy: Float32Array, x: Float32Array, dx: Float32Array, dims: Int32Array, workspace: Uint8Array | null): void;
  avgPoolGrad(dy: Float32Array, dx: Float32Array, dims: Int32Array): void;
  /** out has x's axes in perm's order: out.shape[i] = shape[perm[i]]. */
  transpose(x: Float32Array, out: Float32Array, shape: Int32Array, perm: Int32Array): void;
  /**
   * Updates every variable's value, m and v in place, in one pass; scalars: [beta1, 1 - beta1, beta2, 1 - beta2,
   * 1 - beta1^t, 1 - beta2^t, epsilon, -learningRate]. A variable's `lives` entry [kh, kw, channels, top, rows, left,
   * columns, check] (its gradient is 0 outside those taps of an HWIO filter) updates only those taps when m and v are 0
   * outside them too (checked if `check` is 1): the result holds 1 for each variable where it was so.
   */
  adam(
    values: Float32Array[],
    gradients: Float32Array[],
    ms: Float32Array[],
    vs: Float32Array[],
    scalars: Float32Array,
    lives: Array<Int32Array | null>,
  ): Uint8Array;
}

const ADDON = path.resolve(import.meta.dirname, '../../build/Release/onednn_kernels.node');

/** The addon built by `npm ci` (binding.gyp), or why it is not there. */
export function loadOneDnn(): { addon: OneDnnAddon } | { missing: string } {
  if (!existsSync(ADDON)) return { missing: 'not built (npm ci builds it where libdnnl-dev and a C++ compiler are installed)' };
  try {
    return { addon: createRequire(import.meta.url)(ADDON) as OneDnnAddon };
  } catch (error) {
    return { missing: `does not load: ${(error as Error).message.split('\n')[0]}` };
  }
}
