// Post-training static quantisation of a model's backbone: BatchNorms folded into their convolutions,
// s8 filters per output channel (the addon quantises them), one u8/s8 scale per activation tensor from
// the ranges a calibration pass observed. The classifier on the 2048-D codes stays in float32.
import * as tf from '@tensorflow/tfjs';
import type { ActivationRanges } from '../../schemas/artifacts.js';
import type { Int8Handle, Int8OpSpec, Int8TensorSpec, OneDnnAddon } from '../native/onednn.js';
import { backboneStages, STAGE_COUNT, type Builder, type ConvBn } from './architecture.js';
import { BatchNorm2d } from './batch-norm.js';
import { FEATURE_DIM, type ResNet50 } from './resnet50.js';

/** The image's range is kept under this name; every other tensor under the path of what made it. */
export const INPUT_RANGE = 'input';

/** The smallest and largest value of every tensor the int8 backbone keeps, over the images it is shown. */
export class RangeObserver {
  private readonly ranges = new Map<string, [number, number]>();
  images = 0;

  constructor(private readonly resnet: ResNet50) {}

  observe(x: tf.Tensor4D): void {
    tf.tidy(() => {
      this.record(INPUT_RANGE, x);
      this.resnet.stagesBefore(x, STAGE_COUNT, (name, tensor) => this.record(name, tensor));
    });
    this.images += x.shape[0];
  }

  result(): ActivationRanges {
    return Object.fromEntries(this.ranges);
  }

  private record(name: string, tensor: tf.Tensor): void {
    const [min, max] = [tf.min(tensor).dataSync()[0], tf.max(tensor).dataSync()[0]];
    const seen = this.ranges.get(name);
    this.ranges.set(name, seen ? [Math.min(seen[0], min), Math.max(seen[1], max)] : [min, max]);
  }
}

interface Symbol {
  readonly shape: ReadonlyArray<number | null>;
  readonly index: number;
}

interface PlanTensor {
  name: string;
  signed: boolean;
  channels: number;
}

interface Plan {
  resnet: ResNet50;
  tensors: PlanTensor[];
  ops: Int8OpSpec[];
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
    const bn = this.plan.resnet.model.getLayer(this.path(spec.bn));
    if (!(bn instanceof BatchNorm2d)) throw new Error(`${bn.name} is not a BatchNorm2d`);
    const convKernel = this.plan.resnet.model.getLayer(convName).getWeights()[0];
    const { scale, shift } = bn.inferenceAffine();
    const folded = tf.mul(convKernel, scale);
    const values = [folded.dataSync() as Float32Array, shift.dataSync() as Float32Array];
    tf.dispose([scale, shift, folded]);
    // Without a ReLU the output may be negative (a downsample); a conv3's is replaced by its block's sum.
    const dst = this.tensor(convName, spec.reluCall === undefined, spec.filters);
    const [kernel, stride, pad] = [spec.kernel, spec.stride, (spec.kernel - 1) / 2];
    // A u8 output saturates at 0: the ReLU is in the rounding.
    this.plan.ops.push({
      kind: 'conv',
      src: x.index,
      dst: dst.index,
      kernel,
      stride,
      pad,
      relu: false,
      filter: values[0],
      bias: values[1],
    });
    return dst;
  }

  addRelu(x: Symbol, identity: Symbol): Symbol {
    const at = this.plan.ops.findIndex((op) => op.dst === x.index);
    const [op] = this.plan.ops.splice(at, 1);
    if (op.kind !== 'conv') throw new Error('a residual sum follows a convolution');
    // The sum runs in the convolution's epilogue, so the shortcut (a downsample made after it) must exist first.
    this.plan.ops.push({ ...op, sum: identity.index, relu: true });
    this.plan.tensors[x.index] = { ...this.plan.tensors[x.index], name: this.path('add'), signed: false };
    return x;
  }

  maxPool(x: Symbol): Symbol {
    // The same values, so the same range and scale.
    const dst = this.tensor(this.plan.tensors[x.index].name, false, this.plan.tensors[x.index].channels);
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

  tensor(name: string, signed: boolean, channels: number): Symbol {
    this.plan.tensors.push({ name, signed, channels });
    return { shape: [null, null, null, channels], index: this.plan.tensors.length - 1 };
  }
}

/** The scale that maps a tensor's observed range onto u8 (0..255) or s8 (-127..127). */
function scaleOf(tensor: PlanTensor, ranges: ActivationRanges): number {
  const range = ranges[tensor.name];
  if (!range) throw new Error(`the calibration has no range for ${tensor.name}`);
  const [min, max] = range;
  const magnitude = tensor.signed ? Math.max(Math.abs(min), Math.abs(max)) / 127 : Math.max(max, 0) / 255;
  return magnitude > 0 && Number.isFinite(magnitude) ? magnitude : 1;
}

/** A model's backbone in int8 on the addon: quantised once, then run on batches of float images. */
export class Int8Backbone {
  private constructor(
    private readonly addon: OneDnnAddon,
    private readonly handle: Int8Handle,
  ) {}

  static build(addon: OneDnnAddon, resnet: ResNet50, ranges: ActivationRanges): Int8Backbone {
    const plan: Plan = { resnet, tensors: [], ops: [] };
    const builder = new PlanBuilder(plan, '');
    const [inputMin] = ranges[INPUT_RANGE] ?? [-1];
    const input = builder.tensor(INPUT_RANGE, inputMin < 0, 3);
    backboneStages(builder, input, 0, STAGE_COUNT);
    const tensors: Int8TensorSpec[] = plan.tensors.map((t) => ({ signed: t.signed, scale: scaleOf(t, ranges), channels: t.channels }));
    return new Int8Backbone(addon, addon.int8Network({ tensors, ops: plan.ops }));
  }

  /** The 2048-D codes of a batch of NHWC float images. */
  codes(x: tf.Tensor4D): tf.Tensor2D {
    const [n, h, w, c] = x.shape;
    const out = new Float32Array(n * FEATURE_DIM);
    this.addon.int8Run(this.handle, x.dataSync() as Float32Array, Int32Array.of(n, h, w, c), out, true);
    return tf.tensor2d(out, [n, FEATURE_DIM]);
  }
}

/** Logits of a batch with the backbone in int8 and the classifier in float32. */
export function int8Logits(resnet: ResNet50, backbone: Int8Backbone, x: tf.Tensor4D): tf.Tensor {
  return tf.tidy(() => resnet.classify(backbone.codes(x)));
}
