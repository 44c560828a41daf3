import * as tf from '../tf.js';
import { CONV_BACKWARD, nativeConvBackward } from '../native/kernels/conv-backward.js';
import { SCALED_CONV } from '../native/kernels/conv2d.js';
import { addRelu } from '../native/kernels/add-relu.js';
import { reluBackward } from '../native/kernels/relu-grad.js';
import { dataIdNumber } from '../native/kernels/heap.js';
import { backboneStages, head, maxPoolLayers, STAGE_COUNT, zeroPadLayer, type Builder, type ConvBn } from './architecture.js';
import { BatchNorm2d } from './batch-norm.js';
import type { Network } from './network.js';

/** tfjs-node's kernels take 'same' or 'valid' only; the others take PyTorch's symmetric padding as a number. */
type Padding = 'same' | 'valid' | number;

/** A BatchNorm in inference mode folded into its convolution: the filter scaled per output channel, the shift a bias. */
interface Folding {
  stateIds: number[];
  scale: tf.Tensor1D;
  shift: tf.Tensor1D;
  /** Kept only for a frozen convolution: a trainable one's filter changes every step. */
  filter: tf.Tensor4D | null;
}

/**
 * Runs a built ResNet-50's layers eagerly, by the same description that built them. A BatchNorm in
 * inference mode (frozen, or any at prediction) is folded into its convolution, and ReLU runs in the
 * convolution's epilogue: one kernel where the layers model runs three, and no per-layer overhead of
 * tfjs-layers. Gradients are taken only where something trains: a convolution whose input carries no
 * gradient (the stem, the first trained block after frozen stages) computes no input gradient.
 */
export class EagerResNet {
  readonly network: Network;
  private readonly layers: Map<string, tf.layers.Layer>;
  private readonly foldings = new Map<string, Folding>();

  constructor(
    private readonly model: tf.LayersModel,
    private readonly numClasses: number,
    private readonly fineTuning: boolean,
  ) {
    this.layers = new Map(model.layers.map((layer) => [layer.name, layer]));
    this.network = this.networkFrom(0);
  }

  /**
   * The output of the stages before `stage`, in inference mode (STAGE_COUNT: the 2048-D codes): what the
   * stages from `stage` on take. `observe` sees every convolution's output and every residual sum's, by path.
   */
  stagesBefore(x: tf.Tensor, stage: number, observe?: Observer): tf.Tensor {
    return backboneStages(new EagerRun(this, false, '', new WeakSet(), new Handoff(), observe), x, 0, stage);
  }

  /** The classifier on 2048-D codes, in inference mode. */
  classify(codes: tf.Tensor): tf.Tensor {
    return head(new EagerRun(this, false, '', new WeakSet(), new Handoff()), codes, this.numClasses, this.fineTuning);
  }

  /** The network from `stage` on, for batches of what stagesBefore(stage) gives. */
  networkFrom(stage: number): Network {
    const { model } = this;
    return {
      get trainableWeights() {
        return model.trainableWeights;
      },
      forward: (x, training) => {
        const run = new EagerRun(this, training, '', new WeakSet(), new Handoff());
        return head(run, backboneStages(run, x, stage, STAGE_COUNT), this.numClasses, this.fineTuning);
      },
    };
  }

  layer(name: string): tf.layers.Layer {
    const layer = this.layers.get(name);
    if (!layer) throw new Error(`the model has no layer ${name}`);
    return layer;
  }

  /** The folding of `bn` into `conv`, kept while their values stay the same. */
  folding(conv: tf.layers.Layer, bn: BatchNorm2d, keepFilter: boolean): Folding {
    const kernel = conv.weights[0].read() as tf.Tensor4D;
    const stateIds = [...bn.stateIds(), ...(keepFilter ? [dataIdNumber(kernel)] : [])];
    const kept = this.foldings.get(conv.name);
    if (kept && kept.stateIds.length === stateIds.length && kept.stateIds.every((id, i) => id === stateIds[i])) return kept;
    if (kept) this.forget(kept);
    const { scale, shift } = bn.inferenceAffine();
    const filter = keepFilter ? tf.tidy(() => tf.mul<tf.Tensor4D>(kernel, scale)) : null;
    const folding = { stateIds, scale: tf.keep(scale), shift: tf.keep(shift), filter: filter && tf.keep(filter) };
    this.foldings.set(conv.name, folding);
    return folding;
  }

  dispose(): void {
    for (const folding of this.foldings.values()) this.forget(folding);
    this.foldings.clear();
  }

  private forget(folding: Folding): void {
    tf.dispose([folding.scale, folding.shift, ...(folding.filter ? [folding.filter] : [])]);
  }
}

/** Sees a tensor the forward pass made: a convolution's output (named by its path) or a residual sum's (`<block>.add`). */
export type Observer = (name: string, tensor: tf.Tensor) => void;

/**
 * Gradients of a tensor from its later readers (a block's input: its sum, in conv3's backward call, or its downsample),
 * handed to its first reader (conv1), whose backward pass runs last of them and adds them in its own call: tfjs would sum
 * a tensor's gradients in a pass of its own. The receiving convolution takes the handed tensor over: its data becomes dx.
 */
class Handoff {
  private readonly receivers = new WeakSet<tf.Tensor>();
  private readonly handed = new Map<tf.Tensor, tf.Tensor>();

  /** `x`'s first reader computes its gradient: the one a handed gradient of `x` goes to. */
  receiveFor(x: tf.Tensor): void {
    this.receivers.add(x);
  }

  takesFor(x: tf.Tensor): boolean {
    return this.receivers.has(x);
  }

  hand(x: tf.Tensor, gradient: tf.Tensor): void {
    if (this.handed.has(x)) throw new Error('a gradient was handed twice for one tensor');
    this.handed.set(x, gradient);
  }

  take(x: tf.Tensor): tf.Tensor | undefined {
    const gradient = this.handed.get(x);
    this.handed.delete(x);
    return gradient;
  }
}

/** One forward pass: the builder the architecture runs against, and which tensors carry a gradient. */
class EagerRun implements Builder<tf.Tensor> {
  constructor(
    private readonly owner: EagerResNet,
    private readonly training: boolean,
    private readonly prefix: string,
    private readonly differentiable: WeakSet<tf.Tensor>,
    private readonly handoff: Handoff,
    private readonly observe?: Observer,
  ) {}

  path(varName: string): string {
    return this.prefix ? `${this.prefix}.${varName}` : varName;
  }

  seed(): number {
    return 0;
  }

  convBn(spec: ConvBn, x: tf.Tensor): tf.Tensor {
    return this.convBnPlus(spec, x, null);
  }

  addRelu(x: tf.Tensor, identity: tf.Tensor): tf.Tensor {
    const out = addRelu(x, identity);
    this.observe?.(this.path('add'), out);
    return this.mark(out, this.differentiable.has(x) || this.differentiable.has(identity));
  }

  /** The block's sum in conv3's epilogue where the kernel takes it; an observer sees conv3's own output, so not then. */
  residual(spec: ConvBn, x: tf.Tensor, identity: () => tf.Tensor): tf.Tensor {
    if (this.observe) return this.addRelu(this.convBn(spec, x), identity());
    return this.convBnPlus(spec, x, identity());
  }

  /** Conv2d, BatchNorm2d, then ReLU if the spec has one; with `residual`, + residual before a ReLU (the block's). */
  private convBnPlus(spec: ConvBn, x: tf.Tensor, residual: tf.Tensor | null): tf.Tensor {
    const convName = this.path(spec.conv);
    const conv = this.owner.layer(convName);
    const bn = this.owner.layer(this.path(spec.bn));
    if (!(bn instanceof BatchNorm2d)) throw new Error(`${bn.name} is not a BatchNorm2d`);
    const pad = (spec.kernel - 1) / 2;
    // Where padding must be 'same' or 'valid', as the layers model does it: a padding layer at stride 2.
    const padLayer = spec.stride > 1 && pad > 0 && tf.getBackend() === 'tensorflow';
    const input = padLayer ? this.plain(`${convName}.pad`, (name) => zeroPadLayer(name, pad), x) : x;
    const padding: Padding = padLayer || pad === 0 ? 'valid' : spec.stride === 1 ? 'same' : pad;
    const relu = spec.reluCall !== undefined;
    const kernel = conv.weights[0].read() as tf.Tensor4D;
    const trainsConv = this.training && conv.trainable;
    if (this.training && bn.trainable) {
      const normalised = bn.apply(tf.conv2d(input as tf.Tensor4D, kernel, spec.stride, padding), { training: true }) as tf.Tensor;
      const out = this.mark(relu ? tf.relu(normalised) : normalised, true);
      return residual ? this.addRelu(out, residual) : out;
    }
    // A trainable filter changes every step: a folded copy of it (and its reorder) would be stale by the next validation.
    const folding = this.owner.folding(conv, bn, !conv.trainable);
    const weights = folding.filter ? { filter: folding.filter } : { filter: kernel, scale: folding.scale };
    const differentiable = (t: tf.Tensor | null) => t !== null && this.training && this.differentiable.has(t);
    const summand = residual && tf.getKernel(SCALED_CONV, tf.getBackend()) ? (residual as tf.Tensor4D) : null;
    // A tensor's first reader takes the gradients its later readers hand over (the native backward kernel adds them).
    const handing = tf.getKernel(CONV_BACKWARD, tf.getBackend()) !== undefined;
    const route = (t: tf.Tensor | null): GradientRoute =>
      !differentiable(t) ? 'none' : t && handing && this.handoff.takesFor(t) ? 'handed' : 'taped';
    // A later reader hands x's gradient over only along with its filter's, so its backward pass surely runs.
    const gradients = { x: route(x), filter: trainsConv, residual: route(summand) };
    if (gradients.x === 'handed' && !trainsConv) gradients.x = 'taped';
    const first = gradients.x === 'taped' && !this.handoff.takesFor(x);
    if (first) this.handoff.receiveFor(x);
    const out = foldedConv(input as tf.Tensor4D, weights, folding.shift, {
      strides: spec.stride,
      pad: padding,
      relu: relu || summand !== null,
      residual: summand,
      gradients,
      hand: (tensor, gradient) => this.handoff.hand(tensor, gradient),
      ...(first && { take: () => this.handoff.take(x) }),
    });
    this.observe?.(convName, out);
    const marked = this.mark(out, gradients.x !== 'none' || gradients.filter || gradients.residual !== 'none');
    return residual && !summand ? this.addRelu(marked, residual) : marked;
  }

  maxPool(x: tf.Tensor): tf.Tensor {
    // One padded pool where the backend takes explicit padding: a padding layer's gradient is a slow strided slice.
    if (tf.getBackend() === 'tensorflow') return maxPoolLayers(this, x);
    return this.mark(tf.maxPool(x as tf.Tensor4D, 3, 2, 1), this.differentiable.has(x));
  }

  leaf(_type: string, varName: string, _make: (name: string) => tf.layers.Layer, x: tf.Tensor): tf.Tensor {
    const layer = this.owner.layer(this.path(varName));
    const out = layer.apply(x, { training: this.training }) as tf.Tensor;
    return this.mark(out, this.differentiable.has(x) || (this.training && layer.trainableWeights.length > 0));
  }

  plain(name: string, _make: (name: string) => tf.layers.Layer, x: tf.Tensor): tf.Tensor {
    return this.mark(this.owner.layer(name).apply(x) as tf.Tensor, this.differentiable.has(x));
  }

  container(_type: string, varName: string, build: (inner: Builder<tf.Tensor>) => tf.Tensor): tf.Tensor {
    return build(new EagerRun(this.owner, this.training, this.path(varName), this.differentiable, this.handoff, this.observe));
  }

  private mark(tensor: tf.Tensor, differentiable: boolean): tf.Tensor {
    if (differentiable && this.training) this.differentiable.add(tensor);
    return tensor;
  }
}

/** How foldedConv runs: the layer's geometry, what it adds, and which gradients it passes back, and how. */
/** Where a gradient goes: back to tfjs' tape, handed to its tensor's first reader (Handoff), or nowhere (not computed). */
type GradientRoute = 'taped' | 'handed' | 'none';

interface ConvCall {
  strides: number;
  pad: Padding;
  relu: boolean;
  /** Added before the ReLU (this project's kernel only). */
  residual: tf.Tensor4D | null;
  gradients: { x: GradientRoute; filter: boolean; residual: GradientRoute };
  hand: (tensor: tf.Tensor, gradient: tf.Tensor) => void;
  /** A gradient of x handed over by a later reader of x, to add to this call's input gradient. */
  take?: () => tf.Tensor | undefined;
}

/**
 * Convolution (its filter times `scale` per output channel, if given), bias, residual and optional ReLU in one kernel, with
 * a gradient for only the inputs `gradients` names (tfjs' fused conv computes the input's and the bias's whether wanted or not).
 */
function foldedConv(x: tf.Tensor4D, weights: { filter: tf.Tensor4D; scale?: tf.Tensor1D }, bias: tf.Tensor1D, call: ConvCall): tf.Tensor4D {
  const { strides, pad, relu, residual, gradients } = call;
  // The addon scales the filter as it reorders it, and the gradient at the output on its way back; elsewhere a multiply does.
  const scale = weights.scale && tf.getKernel(SCALED_CONV, tf.getBackend()) ? weights.scale : undefined;
  const filter = weights.scale && !scale ? tf.mul<tf.Tensor4D>(weights.filter, weights.scale) : weights.filter;
  // The kernel itself: tf.fused.conv2d splits into conv, add and relu whenever a gradient is being taken.
  const attrs = { strides, pad, dataFormat: 'NHWC' as const, dilations: 1, activation: relu ? 'relu' : 'linear' };
  const run = () =>
    scale || residual
      ? tf.engine().runKernel<tf.Tensor4D>(SCALED_CONV, { x, filter, bias, ...(scale && { scale }), ...(residual && { residual }) }, attrs)
      : tf.engine().runKernel<tf.Tensor4D>('FusedConv2D', { x, filter, bias }, attrs);
  const wanted = { x: gradients.x !== 'none', residual: residual !== null && gradients.residual !== 'none' };
  if (!wanted.x && !gradients.filter && !wanted.residual) return run();
  const taped = { x: gradients.x === 'taped', residual: residual !== null && gradients.residual === 'taped' };
  const differentiable = [
    ...(taped.x ? [x] : []),
    ...(gradients.filter ? [filter] : []),
    ...(taped.residual && residual ? [residual] : []),
  ];
  // Handed gradients leave through the backward pass of what tfjs differentiates: something must be.
  if (differentiable.length === 0) throw new Error('a convolution hands gradients over only along with one it returns');
  const withGradient = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const y = run();
    save([x, filter, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [savedX, savedFilter, savedY] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
        const addend = wanted.x ? (call.take?.() as tf.Tensor4D | undefined) : undefined;
        const backwardAttrs = {
          ...attrs,
          relu,
          outputGradient: wanted.residual,
          inputGradient: wanted.x,
          filterGradient: gradients.filter,
        };
        const inputs = { dy, y: savedY, x: savedX, filter: savedFilter, ...(scale && { scale }), ...(addend && { addend }) };
        const native = nativeConvBackward(inputs, backwardAttrs);
        if (native) {
          // The addend's data is now dx's; dy is read only here (tfjs frees it at the pass's end): freed, its data can be written over.
          tf.dispose(addend ? [dy, addend] : dy);
          // The kernel gives [dz?, dx?, dFilter?] (dz: the residual's, the ReLU's input's); tfjs takes x's, the filter's, the residual's.
          const outputs = [...native];
          const dz = wanted.residual ? outputs.shift() : undefined;
          const dx = wanted.x ? outputs.shift() : undefined;
          if (dz && residual && !taped.residual) call.hand(residual, dz);
          if (dx && !taped.x) call.hand(x, dx);
          return [...(taped.x && dx ? [dx] : []), ...outputs, ...(taped.residual && dz ? [dz] : [])];
        }
        // A residual or a handed gradient comes with this project's kernels only, and so does their backward kernel.
        if (residual || addend || gradients.x === 'handed')
          throw new Error(`${SCALED_CONV} ran without ${CONV_BACKWARD} to take its gradient`);
        const dz = (relu ? reluBackward(dy, savedY) : dy) as tf.Tensor4D;
        const result: tf.Tensor[] = [];
        if (wanted.x) result.push(tf.conv2dTranspose(dz, savedFilter, savedX.shape, strides, pad));
        if (gradients.filter) {
          const filterAttrs = { strides, pad, dataFormat: 'NHWC', filterShape: savedFilter.shape };
          result.push(tf.engine().runKernel<tf.Tensor>('Conv2DBackpropFilter', { x: savedX, dy: dz }, filterAttrs));
        }
        return result;
      },
    };
  });
  return withGradient(...differentiable);
}
