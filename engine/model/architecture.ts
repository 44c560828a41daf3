import * as tf from '../tf.js';
import { Dropout } from './dropout.js';

/** [blocks, bottleneck width] per stage, torchvision's resnet50. */
export const STAGE_PLAN: ReadonlyArray<readonly [number, number]> = [
  [3, 64],
  [4, 128],
  [6, 256],
  [3, 512],
];
export const EXPANSION = 4;
export const FINE_TUNING_HEAD = { hidden: [512, 256], dropout: [0.25, 0.5] } as const;

export interface ConvBn {
  conv: string;
  bn: string;
  filters: number;
  kernel: number;
  stride: number;
  /** Which call of the module's ReLU follows the BatchNorm (torchvision reuses one ReLU per block), if any. */
  reluCall?: number;
}

/**
 * What ResNet-50 is made of, for whoever runs the description below: the symbolic builder makes the
 * tfjs layers and torchinfo's module tree from it, the eager runner runs those layers with every frozen
 * BatchNorm folded into its convolution. Names are torchvision's module paths.
 */
export interface Builder<T extends { readonly shape: ReadonlyArray<number | null> }> {
  /** Conv2d (no bias, PyTorch's symmetric padding), BatchNorm2d, then ReLU if `reluCall` is set. */
  convBn(spec: ConvBn, x: T): T;
  /** The residual sum (an unrecorded tfjs layer `add`) and the block's ReLU. */
  addRelu(x: T, identity: T, reluCall: number): T;
  /**
   * A block's end in one: convBn(spec, x) (no ReLU of its own) + identity(), then the block's ReLU, for a runner that
   * sums in the convolution's epilogue. Without it, convBn, identity() and addRelu run in that order (the model's).
   */
  residual?(spec: ConvBn, x: T, identity: () => T, reluCall: number): T;
  /** A module with a layer of its own; `make` builds the layer (the symbolic builder only). */
  leaf(type: string, varName: string, make: (name: string) => tf.layers.Layer, x: T): T;
  /** A tfjs layer that is no module of torchvision's (padding, flattening). */
  plain(name: string, make: (name: string) => tf.layers.Layer, x: T): T;
  container(type: string, varName: string, build: (inner: Builder<T>) => T): T;
  /** The stem's MaxPool2d(3, stride 2, padding 1). */
  maxPool(x: T): T;
  path(varName: string): string;
  /** The next initializer seed, in the order of construction (the symbolic builder's; 0 elsewhere). */
  seed(): number;
}

export function reluName(path: string, call: number): string {
  return `${path}${call > 0 ? `_${call}` : ''}`;
}

export function zeroPadLayer(name: string, pad: number): tf.layers.Layer {
  return tf.layers.zeroPadding2d({ name, padding: pad });
}

/** The stem's max pool as tfjs layers, which pad only 'same' or 'valid': a padding layer, then the pool. */
export function maxPoolLayers<T extends { readonly shape: ReadonlyArray<number | null> }>(b: Builder<T>, x: T): T {
  // Zero padding equals PyTorch's -inf padding here: the input is post-ReLU, so never negative.
  const padded = b.plain('maxpool.pad', (name) => zeroPadLayer(name, 1), x);
  return b.leaf('MaxPool2d', 'maxpool', (name) => tf.layers.maxPooling2d({ name, poolSize: 3, strides: 2, padding: 'valid' }), padded);
}

function linear<T extends { readonly shape: ReadonlyArray<number | null> }>(b: Builder<T>, varName: string, x: T, units: number): T {
  const fanIn = x.shape[x.shape.length - 1] as number;
  const bound = 1 / Math.sqrt(fanIn);
  return b.leaf(
    'Linear',
    varName,
    (name) =>
      tf.layers.dense({
        name,
        units,
        // PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
        kernelInitializer: tf.initializers.randomUniform({ minval: -bound, maxval: bound, seed: b.seed() }),
        biasInitializer: tf.initializers.randomUniform({ minval: -bound, maxval: bound, seed: b.seed() }),
      }),
    x,
  );
}

/** torchvision's Bottleneck (v1.5): the stride sits on the 3x3 conv. */
function bottleneck<T extends { readonly shape: ReadonlyArray<number | null> }>(
  b: Builder<T>,
  x: T,
  width: number,
  stride: number,
  downsample: boolean,
): T {
  const filters = width * EXPANSION;
  let out = b.convBn({ conv: 'conv1', bn: 'bn1', filters: width, kernel: 1, stride: 1, reluCall: 0 }, x);
  out = b.convBn({ conv: 'conv2', bn: 'bn2', filters: width, kernel: 3, stride, reluCall: 1 }, out);
  const last: ConvBn = { conv: 'conv3', bn: 'bn3', filters, kernel: 1, stride: 1 };
  const identity = () =>
    downsample ? b.container('Sequential', 'downsample', (ds) => ds.convBn({ conv: '0', bn: '1', filters, kernel: 1, stride }, x)) : x;
  if (b.residual) return b.residual(last, out, identity, 2);
  out = b.convBn(last, out);
  return b.addRelu(out, identity(), 2);
}

/** The backbone's stages in order, as the Stage names count them: 0 the stem (conv1 to maxpool), 1-4 layer1-layer4. */
export const STAGE_COUNT = 5;

/** Image in, 2048-D CNN code (layer4 average-pooled and flattened) out. */
export function backbone<T extends { readonly shape: ReadonlyArray<number | null> }>(b: Builder<T>, input: T): T {
  return backboneStages(b, input, 0, STAGE_COUNT);
}

/**
 * Stages [from, to) of the backbone, on the output of the stage before `from` (or on the image); up to
 * the last stage, the average pool and flattening too. Splitting changes nothing of the layers or their order.
 */
export function backboneStages<T extends { readonly shape: ReadonlyArray<number | null> }>(
  b: Builder<T>,
  input: T,
  from: number,
  to: number,
): T {
  const x = convolutionalStages(b, input, from, to);
  return to < STAGE_COUNT ? x : pooledCodes(b, x);
}

/** Stages [from, to) without the final pooling: feature maps. */
export function convolutionalStages<T extends { readonly shape: ReadonlyArray<number | null> }>(
  b: Builder<T>,
  input: T,
  from: number,
  to: number,
): T {
  let x = input;
  if (from === 0 && to > 0) {
    x = b.convBn({ conv: 'conv1', bn: 'bn1', filters: 64, kernel: 7, stride: 2, reluCall: 0 }, x);
    x = b.maxPool(x);
  }
  for (let stage = Math.max(from, 1); stage < Math.min(to, STAGE_COUNT); stage++) {
    const [blocks, width] = STAGE_PLAN[stage - 1];
    let inChannels = stage === 1 ? 64 : STAGE_PLAN[stage - 2][1] * EXPANSION;
    x = b.container('Sequential', `layer${stage}`, (layer) => {
      let y = x;
      for (let block = 0; block < blocks; block++) {
        const stride = block === 0 && stage > 1 ? 2 : 1;
        const downsample = block === 0 && (stride !== 1 || inChannels !== width * EXPANSION);
        y = layer.container('Bottleneck', String(block), (inner) => bottleneck(inner, y, width, stride, downsample));
        inChannels = width * EXPANSION;
      }
      return y;
    });
  }
  return x;
}

/** layer4's feature maps to the 2048-D codes: AdaptiveAvgPool2d((1, 1)) over whatever size they have (ceil(size / 32)), flattened. */
export function pooledCodes<T extends { readonly shape: ReadonlyArray<number | null> }>(b: Builder<T>, maps: T): T {
  const poolSize = maps.shape.slice(1, 3) as [number, number];
  const pooled = b.leaf(
    'AdaptiveAvgPool2d',
    'avgpool',
    (name) => tf.layers.averagePooling2d({ name, poolSize, strides: 1, padding: 'valid' }),
    maps,
  );
  return b.plain('flatten', (name) => tf.layers.flatten({ name }), pooled);
}

/** The classifier on the codes: torchvision's `fc` Linear, or the fine-tuning head (Linear-ReLU-Dropout twice, then Linear). */
export function head<T extends { readonly shape: ReadonlyArray<number | null> }>(
  b: Builder<T>,
  features: T,
  numClasses: number,
  fineTuning: boolean,
): T {
  if (!fineTuning) return linear(b, 'fc', features, numClasses);
  return b.container('Sequential', 'fc', (fc) => {
    let x = features;
    let index = 0;
    FINE_TUNING_HEAD.hidden.forEach((units, i) => {
      x = linear(fc, String(index++), x, units);
      x = fc.leaf('ReLU', String(index++), (name) => tf.layers.reLU({ name }), x);
      x = fc.leaf('Dropout', String(index++), (name) => new Dropout({ name, rate: FINE_TUNING_HEAD.dropout[i], seed: fc.seed() }), x);
    });
    return linear(fc, String(index), x, numClasses);
  });
}
