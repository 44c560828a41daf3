import * as tf from '../tf.js';
import { attrsOf } from '../native/kernel-attrs.js';

/**
 * Convolution gradients for the wasm backend, composed from kernels that it runs through XNNPACK.
 * Stock wasm has no Conv2DBackpropFilter (so no conv layer can train) and a scalar-loop
 * Conv2DBackpropInput. Shapes are NHWC, filters HWIO, dilation 1 (ResNet-50 has no dilated conv).
 */
type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];
type Backend = tf.KernelBackend & { disposeData(dataId: object, force?: boolean): boolean };
type Pad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;

interface ConvAttrs {
  strides: [number, number] | number;
  pad: Pad;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** Runs wasm kernels directly and frees every intermediate it made once the result is taken. */
class KernelComposer {
  private readonly made: TensorInfo[] = [];
  constructor(private readonly backend: Backend) {}

  run(kernelName: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}): TensorInfo {
    const kernel = tf.getKernel(kernelName, 'wasm');
    if (!kernel) throw new Error(`wasm backend has no ${kernelName} kernel`);
    const out = kernel.kernelFunc({ inputs, backend: this.backend, attrs }) as TensorInfo;
    this.made.push(out);
    return out;
  }

  reshape(x: TensorInfo, shape: number[]): TensorInfo {
    return this.run('Reshape', { x }, { shape });
  }

  pad(x: TensorInfo, paddings: Array<[number, number]>): TensorInfo {
    if (paddings.every(([before, after]) => before === 0 && after === 0)) return x;
    return this.run('PadV2', { x }, { paddings, constantValue: 0 });
  }

  /** Rows/columns begin, begin+stride, ... of an NHWC tensor, `count` of each. */
  stridedWindow(x: TensorInfo, begin: [number, number], count: [number, number], stride: number): TensorInfo {
    const [n, , , c] = x.shape;
    if (stride === 1) return this.run('Slice', { x }, { begin: [0, begin[0], begin[1], 0], size: [n, count[0], count[1], c] });
    const end = [n, begin[0] + stride * (count[0] - 1) + 1, begin[1] + stride * (count[1] - 1) + 1, c];
    return this.run(
      'StridedSlice',
      { x },
      {
        begin: [0, begin[0], begin[1], 0],
        end,
        strides: [1, stride, stride, 1],
        beginMask: 0,
        endMask: 0,
        ellipsisMask: 0,
        newAxisMask: 0,
        shrinkAxisMask: 0,
      },
    );
  }

  /** Spreads an NHWC tensor's rows and columns `stride` apart, zeros between: [N, H*s, W*s, C]. */
  zeroInsert(x: TensorInfo, stride: number): TensorInfo {
    if (stride === 1) return x;
    const [n, h, w, c] = x.shape;
    const spread = this.pad(this.reshape(x, [n, h, 1, w, 1, c]), [
      [0, 0],
      [0, 0],
      [0, stride - 1],
      [0, 0],
      [0, stride - 1],
      [0, 0],
    ]);
    return this.reshape(spread, [n, h * stride, w * stride, c]);
  }

  /**
   * a^T b for a [M, K], b [M, N]. wasm's BatchMatMul runs through XNNPACK only without transpose
   * flags (about 12x faster here), so transpose the smaller operand explicitly instead.
   */
  matMulTransposedA(a: TensorInfo, b: TensorInfo): TensorInfo {
    const [, k] = a.shape;
    const [, n] = b.shape;
    if (n <= k) {
      const product = this.matMul(this.transpose(b), a);
      return this.transpose(product);
    }
    return this.matMul(this.transpose(a), b);
  }

  matMul(a: TensorInfo, b: TensorInfo): TensorInfo {
    return this.run('BatchMatMul', { a, b }, { transposeA: false, transposeB: false });
  }

  transpose(x: TensorInfo): TensorInfo {
    return this.run('Transpose', { x }, { perm: [1, 0] });
  }

  take(result: TensorInfo): TensorInfo {
    for (const info of this.made) if (info !== result) this.backend.disposeData(info.dataId);
    return result;
  }
}

function convGeometry(xShape: number[], filterShape: number[], attrs: ConvAttrs) {
  if (attrs.dataFormat === 'NCHW') throw new Error('wasm conv gradients support NHWC only');
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  if (info.strideHeight !== info.strideWidth) throw new Error('wasm conv gradients need equal strides');
  return info;
}

/** dW[a,b,ci,co] = sum over n,i,j of x[n, i*s+a-top, j*s+b-left, ci] * dy[n,i,j,co]: im2col, then one matmul. */
function conv2dBackpropFilter({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const { filterShape } = attrsOf<{ filterShape: [number, number, number, number] }>(attrs);
  const info = convGeometry(x.shape, filterShape, attrsOf<ConvAttrs>(attrs));
  const [kh, kw, cin, cout] = filterShape;
  const { outHeight, outWidth, strideHeight: stride, padInfo } = info;
  const k = new KernelComposer(backend as Backend);
  const padded = k.pad(x, [
    [0, 0],
    [padInfo.top, padInfo.bottom],
    [padInfo.left, padInfo.right],
    [0, 0],
  ]);
  const windows: TensorInfo[] = [];
  for (let a = 0; a < kh; a++) {
    for (let b = 0; b < kw; b++) windows.push(k.stridedWindow(padded, [a, b], [outHeight, outWidth], stride));
  }
  const patches = windows.length === 1 ? windows[0] : k.run('Concat', windows as unknown as tf.NamedTensorInfoMap, { axis: 3 });
  const rows = x.shape[0] * outHeight * outWidth;
  const gradient = k.matMulTransposedA(k.reshape(patches, [rows, kh * kw * cin]), k.reshape(dy, [rows, cout]));
  return k.take(k.reshape(gradient, [kh, kw, cin, cout]));
}

/**
 * dx is the correlation of the zero-inserted dy with the flipped, transposed filter; a 1x1 filter
 * needs only a matmul with the filter (then zero insertion for stride 2).
 */
function makeConv2dBackpropInput(stock: tf.KernelFunc) {
  return function conv2dBackpropInput(args: KernelArgs): TensorInfo {
    const { inputs, backend, attrs } = args;
    const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
    const { inputShape } = attrsOf<{ inputShape: [number, number, number, number] }>(attrs);
    const info = convGeometry(inputShape, filter.shape, attrsOf<ConvAttrs>(attrs));
    const [kh, kw, cin, cout] = filter.shape;
    const [n, h, w] = inputShape;
    const { strideHeight: stride, padInfo, outHeight, outWidth } = info;
    const padBefore = [kh - 1 - padInfo.top, kw - 1 - padInfo.left];
    if (padBefore[0] < 0 || padBefore[1] < 0) return stock(args) as TensorInfo;
    const k = new KernelComposer(backend as Backend);
    if (kh === 1 && kw === 1 && padInfo.top === 0 && padInfo.left === 0) {
      const product = k.matMul(k.reshape(dy, [n * outHeight * outWidth, cout]), k.transpose(k.reshape(filter, [cin, cout])));
      const spreadDx = k.zeroInsert(k.reshape(product, [n, outHeight, outWidth, cin]), stride);
      return k.take(fitTo(k, spreadDx, h, w));
    }
    const spread = k.zeroInsert(dy, stride);
    const flipped = k.run('Transpose', { x: k.run('Reverse', { x: filter }, { dims: [0, 1] }) }, { perm: [0, 1, 3, 2] });
    // Output size H needs H + kh - 1 input rows: pad the spread gradient to exactly that.
    const padAfter = [h + kh - 1 - spread.shape[1] - padBefore[0], w + kw - 1 - spread.shape[2] - padBefore[1]];
    const source = fitTo(k, spread, spread.shape[1] + Math.min(padAfter[0], 0), spread.shape[2] + Math.min(padAfter[1], 0));
    const dx = k.run(
      'Conv2D',
      { x: source, filter: flipped },
      {
        strides: [1, 1],
        pad: [
          [0, 0],
          [padBefore[0], Math.max(padAfter[0], 0)],
          [padBefore[1], Math.max(padAfter[1], 0)],
          [0, 0],
        ],
        dataFormat: 'NHWC',
        dilations: [1, 1],
      },
    );
    return k.take(dx);
  };
}

/** Crops or zero-extends the bottom/right of an NHWC tensor to [N, h, w, C]. */
function fitTo(k: KernelComposer, x: TensorInfo, h: number, w: number): TensorInfo {
  const [n, xh, xw, c] = x.shape;
  if (xh === h && xw === w) return x;
  const cropped = xh > h || xw > w ? k.run('Slice', { x }, { begin: [0, 0, 0, 0], size: [n, Math.min(xh, h), Math.min(xw, w), c] }) : x;
  return k.pad(cropped, [
    [0, 0],
    [0, h - cropped.shape[1]],
    [0, w - cropped.shape[2]],
    [0, 0],
  ]);
}

let registered = false;

export function registerWasmTrainingKernels(): void {
  if (registered) return;
  const stockInput = tf.getKernel('Conv2DBackpropInput', 'wasm');
  if (stockInput) tf.unregisterKernel('Conv2DBackpropInput', 'wasm');
  const stock =
    stockInput?.kernelFunc ??
    (() => {
      throw new Error('unsupported Conv2DBackpropInput geometry on wasm');
    });
  tf.registerKernel({ kernelName: 'Conv2DBackpropInput', backendName: 'wasm', kernelFunc: makeConv2dBackpropInput(stock) });
  if (!tf.getKernel('Conv2DBackpropFilter', 'wasm')) {
    tf.registerKernel({ kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2dBackpropFilter });
  }
  registered = true;
}
