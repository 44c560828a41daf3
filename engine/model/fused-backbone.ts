// A backbone as one addon network. In int8, post-training static quantisation: BatchNorms folded into their convolutions,
// s8 filters per output channel (the addon quantises them, and corrects each bias for its rounded
// filter's expected error on the input's channel means), one u8/s8 scale per activation tensor from the
// ranges a calibration pass observed, the residual stream in u8 or in float32. The same plan in bfloat16
// (no calibration: bf16 keeps float's range) runs bf16 activations and filters, and in float32 the float
// network with its ReLUs and residual sums in the convolutions' epilogues. The 2048-D codes and the
// classifier on them stay float32.
import * as tf from '../tf.js';
import type { ActivationRange, ActivationRanges } from '../../schemas/artifacts.js';
import type { Precision, ResidualStream } from '../../schemas/model.js';
import type { Int8Handle, Int8OpSpec, Int8TensorSpec, OneDnnAddon, QuantizedConv } from '../native/onednn.js';
import { registeredOneDnn } from '../native/kernels/register.js';
import { heapViews } from '../native/kernels/heap.js';
import { heapTensor } from './tensor-values.js';
import { backboneStages, STAGE_COUNT, type Builder, type ConvBn } from './architecture.js';
import { foldedConvBn } from './batch-norm.js';
import { FEATURE_DIM, type ResNet50 } from './resnet50.js';

/** The image's range is kept under this name; every other tensor under the path of what made it. */
export const INPUT_RANGE = 'input';

/** The range and channel means of every tensor the int8 backbone keeps, over the images it is shown. */
export class RangeObserver {
  private readonly seen = new Map<string, ActivationRange & { count: number }>();
  images = 0;

  constructor(private readonly resnet: ResNet50) {}

  observe(x: tf.Tensor4D): void {
    tf.tidy(() => {
      this.record(INPUT_RANGE, x);
      this.resnet.stagesBefore(x, STAGE_COUNT, (name, tensor) => this.record(name, tensor));
    });
    this.images += x.shape[0];
  }

  /** Means to 4 significant digits: plenty for bias correction, and a third of int8.json's size. */
  result(): ActivationRanges {
    return Object.fromEntries(
      [...this.seen].map(([name, { min, max, mean }]) => [name, { min, max, mean: mean.map((m) => Number(m.toPrecision(4))) }]),
    );
  }

  private record(name: string, tensor: tf.Tensor): void {
    const [min, max] = [tf.min(tensor).dataSync()[0], tf.max(tensor).dataSync()[0]];
    const mean = Array.from(tf.mean(tensor, [0, 1, 2]).dataSync());
    const [count] = tensor.shape;
    const seen = this.seen.get(name);
    if (!seen) return void this.seen.set(name, { min, max, mean, count });
    // Batches weighted by their images: the mean over every image seen.
    const total = seen.count + count;
    this.seen.set(name, {
      min: Math.min(seen.min, min),
      max: Math.max(seen.max, max),
      mean: seen.mean.map((m, c) => (m * seen.count + mean[c] * count) / total),
      count: total,
    });
  }
}

interface Symbol {
  readonly shape: ReadonlyArray<number | null>;
  readonly index: number;
}

/** The type of a fused backbone's activations. */
export type FusedPrecision = 'int8' | 'bf16' | 'fp32';

interface PlanTensor {
  name: string;
  type: Int8TensorSpec['type'];
  channels: number;
}

interface Plan {
  resnet: ResNet50;
  /** int8: u8/s8 tensors as the ranges say; bf16: every narrow tensor bf16; fp32: every tensor f32. */
  precision: FusedPrecision;
  ranges: ActivationRanges;
  residual: ResidualStream;
  tensors: PlanTensor[];
  ops: Int8OpSpec[];
  /** Each float tensor's rounded copy, made once for the convolutions that read it. */
  rounded: Map<number, number>;
}

/** Runs the architecture's description into a list of int8 ops over numbered tensors. */
class PlanBuilder implements Builder<Symbol> {
  constructor(
    private readonly plan: Plan,
    private readonly prefix: string,
  ) {}

  path(varName: string): string {
    return this.prefix ? `${this.prefix}.${varName}` : varName;
  }

  seed(): number {
    return 0;
  }

  convBn(spec: ConvBn, x: Symbol): Symbol {
    const convName = this.path(spec.conv);
    const { model } = this.plan.resnet;
    const { filter, bias } = foldedConvBn(model.getLayer(convName), model.getLayer(this.path(spec.bn)));
    // Without a ReLU the output may be negative (a downsample); a conv3's is replaced by its block's sum.
    const src = this.readable(x);
    const dst = this.tensor(convName, this.narrow(spec.reluCall === undefined ? 's8' : 'u8'), spec.filters);
    const [kernel, stride, pad] = [spec.kernel, spec.stride, (spec.kernel - 1) / 2];
    // A u8 output saturates at 0: the ReLU is in the rounding; floats need it in the epilogue.
    const relu = spec.reluCall !== undefined && this.plan.precision !== 'int8';
    this.plan.ops.push({
      kind: 'conv',
      name: convName,
      src,
      dst: dst.index,
      kernel,
      stride,
      pad,
      relu,
      filter,
      bias,
      ...this.inputMean(src),
    });
    return dst;
  }

  addRelu(x: Symbol, identity: Symbol): Symbol {
    const at = this.plan.ops.findIndex((op) => op.dst === x.index);
    const [op] = this.plan.ops.splice(at, 1);
    if (op.kind !== 'conv') throw new Error('a residual sum follows a convolution');
    // The sum runs in the convolution's epilogue, so the shortcut (a downsample made after it) must exist first.
    this.plan.ops.push({ ...op, sum: identity.index, relu: true });
    const type = this.plan.residual === 'fp32' ? 'f32' : this.narrow('u8');
    this.plan.tensors[x.index] = { ...this.plan.tensors[x.index], name: this.path('add'), type };
    return x;
  }

  /** The channel means of a convolution's input, where the calibration has them (for bias correction). */
  private inputMean(src: number): { inputMean?: Float32Array } {
    const mean = this.plan.ranges[this.plan.tensors[src].name]?.mean;
    return mean?.length ? { inputMean: Float32Array.from(mean) } : {};
  }

  /** `x` as a convolution reads it: itself, or its copy rounded to u8 (over the same range) or bf16. */
  private readable(x: Symbol): number {
    const tensor = this.plan.tensors[x.index];
    if (tensor.type !== 'f32' || this.plan.precision === 'fp32') return x.index;
    let rounded = this.plan.rounded.get(x.index);
    if (rounded === undefined) {
      rounded = this.tensor(tensor.name, this.narrow('u8'), tensor.channels).index;
      this.plan.ops.push({ kind: 'quantize', src: x.index, dst: rounded });
      this.plan.rounded.set(x.index, rounded);
    }
    return rounded;
  }

  maxPool(x: Symbol): Symbol {
    // The same values, so the same range and scale.
    const { name, channels } = this.plan.tensors[x.index];
    const dst = this.tensor(name, this.narrow('u8'), channels);
    this.plan.ops.push({ kind: 'maxpool', src: x.index, dst: dst.index });
    return dst;
  }

  /** The average pool is the addon's last step; flattening is nothing to it. */
  leaf(_type: string, _varName: string, _make: unknown, x: Symbol): Symbol {
    return x;
  }

  plain(_name: string, _make: unknown, x: Symbol): Symbol {
    return x;
  }

  container(_type: string, varName: string, build: (inner: Builder<Symbol>) => Symbol): Symbol {
    return build(new PlanBuilder(this.plan, this.path(varName)));
  }

  /** The type an int8 plan gives a tensor, or the float plan's own type. */
  narrow(type: 'u8' | 's8'): PlanTensor['type'] {
    return { int8: type, bf16: 'bf16' as const, fp32: 'f32' as const }[this.plan.precision];
  }

  tensor(name: string, type: PlanTensor['type'], channels: number): Symbol {
    this.plan.tensors.push({ name, type, channels });
    return { shape: [null, null, null, channels], index: this.plan.tensors.length - 1 };
  }
}

/** The scale that maps a tensor's observed range onto u8 (0..255) or s8 (-127..127); floats keep theirs. */
function scaleOf(tensor: PlanTensor, ranges: ActivationRanges): number {
  if (tensor.type === 'f32' || tensor.type === 'bf16') return 1;
  const range = ranges[tensor.name];
  if (!range) throw new Error(`the calibration has no range for ${tensor.name}`);
  const scale = tensor.type === 's8' ? Math.max(Math.abs(range.min), Math.abs(range.max)) / 127 : Math.max(range.max, 0) / 255;
  return scale > 0 && Number.isFinite(scale) ? scale : 1;
}

/** What an int8 backbone runs, for an export to write the same: tensors rounded (by name), and convolutions' weights (by path). */
export interface Int8Description {
  residual: ResidualStream;
  /** The input and every tensor rounded to u8/s8 on its way (a float residual stream's rounded copies under its name). */
  rounded: Map<string, { type: 'u8' | 's8'; scale: number }>;
  convs: Map<string, QuantizedConv>;
}

/** The backbone as one addon network: int8 (from calibrated ranges), bf16 or float32. */
export class FusedBackbone {
  private constructor(
    private readonly addon: OneDnnAddon,
    private readonly handle: Int8Handle,
    private readonly plan: Plan,
    private readonly tensors: Int8TensorSpec[],
  ) {}

  describe(): Int8Description {
    const rounded = new Map<string, { type: 'u8' | 's8'; scale: number }>();
    this.plan.tensors.forEach(({ name, type }, i) => {
      if (type === 'u8' || type === 's8') rounded.set(name, { type, scale: this.tensors[i].scale });
    });
    const weights = this.addon.int8Weights(this.handle);
    const convs = new Map<string, QuantizedConv>();
    this.plan.ops.forEach((op, i) => {
      const conv = weights[i];
      if (op.kind === 'conv' && op.name && conv) convs.set(op.name, conv);
    });
    return { residual: this.plan.residual, rounded, convs };
  }

  static build(addon: OneDnnAddon, resnet: ResNet50, ranges: ActivationRanges, residual: ResidualStream = 'int8'): FusedBackbone {
    return FusedBackbone.plan(addon, resnet, { precision: 'int8', ranges, residual });
  }

  /**
   * The stages before `stages` (all by default) in float32, each ReLU and residual sum in its convolution's
   * epilogue, or in bfloat16, its residual stream bf16 too (the faster on the bench, within the same
   * agreement) unless told float32.
   */
  static float(
    addon: OneDnnAddon,
    resnet: ResNet50,
    precision: Precision,
    { stages = STAGE_COUNT, residual = precision === 'bf16' ? 'int8' : 'fp32' }: { stages?: number; residual?: ResidualStream } = {},
  ): FusedBackbone {
    if (!(stages >= 1 && stages <= STAGE_COUNT)) throw new RangeError(`FusedBackbone.float: stages ${stages} is not 1..${STAGE_COUNT}`);
    return FusedBackbone.plan(addon, resnet, { precision, ranges: {}, residual }, stages);
  }

  private static plan(
    addon: OneDnnAddon,
    resnet: ResNet50,
    { precision, ranges, residual }: Pick<Plan, 'precision' | 'ranges' | 'residual'>,
    stages = STAGE_COUNT,
  ): FusedBackbone {
    const plan: Plan = { resnet, precision, ranges, residual, tensors: [], ops: [], rounded: new Map() };
    const builder = new PlanBuilder(plan, '');
    const input = builder.tensor(INPUT_RANGE, builder.narrow((ranges[INPUT_RANGE]?.min ?? -1) < 0 ? 's8' : 'u8'), 3);
    backboneStages(builder, input, 0, stages);
    // The codes the float classifier reads stay float: rounding them to 256 levels would cost the most agreement.
    plan.tensors[plan.tensors.length - 1].type = 'f32';
    // The stem alone ends in its max pooling, which keeps its input's type: the convolution before it writes float too.
    const last = plan.ops[plan.ops.length - 1];
    if (last.kind === 'maxpool') plan.tensors[last.src].type = 'f32';
    const tensors: Int8TensorSpec[] = plan.tensors.map((t) => ({ type: t.type, scale: scaleOf(t, ranges), channels: t.channels }));
    return new FusedBackbone(addon, addon.int8Network({ tensors, ops: plan.ops }), plan, tensors);
  }

  /** The 2048-D codes of a batch of NHWC float images. */
  codes(x: tf.Tensor4D): tf.Tensor2D {
    return this.run(x, [x.shape[0], FEATURE_DIM], true) as tf.Tensor2D;
  }

  /** The last tensor of a batch of NHWC float images, not pooled. */
  outputs(x: tf.Tensor4D): tf.Tensor4D {
    const [n, h, w] = x.shape;
    const [oh, ow, channels] = this.addon.int8OutputShape(this.handle, h, w);
    return this.run(x, [n, oh, ow, channels], false) as tf.Tensor4D;
  }

  /**
   * The network on `x` into a new tensor of `shape`, both read and written in place in the wasm heap (the
   * addon's kernels run only there). Copying the images out went to new memory every call: at 224 px its
   * page faults took ~30 ms of a 16-image batch that oneDNN runs in ~190 ms in bf16.
   */
  private run(x: tf.Tensor4D, shape: number[], pool: boolean): tf.Tensor {
    return heapTensor(shape, (output, backend) => {
      const [input] = heapViews(backend, [x]);
      this.addon.int8Run(this.handle, input, Int32Array.from(x.shape), output, pool);
    });
  }
}

/** Logits of a batch with the fused backbone and the classifier in float32. */
export function fusedLogits(resnet: ResNet50, backbone: FusedBackbone, x: tf.Tensor4D): tf.Tensor {
  return tf.tidy(() => resnet.classify(backbone.codes(x)));
}

/** `make()`, called once, on the first call. */
function onFirstUse<T>(make: () => T): () => T {
  let made: T | undefined;
  return () => (made ??= make());
}

/** The output of the frozen stages before `stage` (1 layer1 .. 4 layer4), computed as frozenCodes computes codes. */
export function frozenStages(resnet: ResNet50, stage: number, precision: Precision): (x: tf.Tensor4D) => tf.Tensor4D {
  const addon = registeredOneDnn();
  if (!addon) return (x) => resnet.stagesBefore(x, stage) as tf.Tensor4D;
  const backbone = onFirstUse(() => FusedBackbone.float(addon, resnet, precision, { stages: stage }));
  return (x) => backbone().outputs(x);
}

/** How a frozen backbone's codes are computed: `fused` and `eager` codes differ by float rounding. */
export interface FrozenCodes {
  engine: 'fused' | 'eager';
  codes(x: tf.Tensor4D): tf.Tensor2D;
}

/**
 * The codes of a backbone that no longer trains, as this thread computes them fastest: one addon network
 * in `precision` (built on first use) where the oneDNN kernels run, else the eager stages.
 */
export function frozenCodes(resnet: ResNet50, precision: Precision): FrozenCodes {
  const addon = registeredOneDnn();
  if (!addon) return { engine: 'eager', codes: (x) => resnet.features(x) as tf.Tensor2D };
  const backbone = onFirstUse(() => FusedBackbone.float(addon, resnet, precision));
  return { engine: 'fused', codes: (x) => backbone().codes(x) };
}
