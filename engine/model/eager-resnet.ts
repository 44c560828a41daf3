import * as tf from '../tf.js';
import { CONV_BACKWARD, nativeConvBackward, type ConvBackwardAttrs } from '../native/kernels/conv-backward.js';
import { KEEP_WORKSPACE } from '../native/kernels/max-pool.js';
import { SCALED_CONV } from '../native/kernels/conv2d.js';
import { addRelu } from '../native/kernels/add-relu.js';
import { reluBackward } from '../native/kernels/relu-grad.js';
import { dataIdNumber } from '../native/kernels/heap.js';
import { runKernelOutputs } from '../native/kernels/run-kernel.js';
import {
  backboneStages,
  convolutionalStages,
  head,
  maxPoolLayers,
  pooledCodes,
  STAGE_COUNT,
  zeroPadLayer,
  type Builder,
  type ConvBn,
} from './architecture.js';
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
    return backboneStages(new EagerRun(this, runContext(false, { observe })), x, 0, stage);
  }

  /** The classifier on 2048-D codes, in inference mode. */
  classify(codes: tf.Tensor): tf.Tensor {
    return head(new EagerRun(this, runContext(false)), codes, this.numClasses, this.fineTuning);
  }

  /** The network from `stage` on, for batches of what stagesBefore(stage) gives. */
  networkFrom(stage: number): Network {
    const { model } = this;
    const forward = (x: tf.Tensor, training: boolean) => {
      const run = new EagerRun(this, runContext(training));
      return head(run, backboneStages(run, x, stage, STAGE_COUNT), this.numClasses, this.fineTuning);
    };
    return {
      get trainableWeights() {
        return model.trainableWeights;
      },
      forward,
      gradients: (x, loss, variables) =>
        this.tapeFree(stage)
          ? this.tapeFreeGradients(x, stage, loss, variables)
          : tf.variableGrads(() => loss(forward(x, true)), variables),
    };
  }

  /** Training from `stage` can skip tfjs' tape where this project's kernels run and no BatchNorm trains on batch statistics. */
  private tapeFree(stage: number): boolean {
    if (!tapeFreeKernels(tf.getBackend()) || stage >= STAGE_COUNT) return false;
    return !this.model.layers.some((layer) => layer instanceof BatchNorm2d && layer.trainable);
  }

  /**
   * The convolutional stages run forward keeping what each differentiable step's backward pass reads (tfjs' tape would keep a
   * clone of each and a node per kernel, and sum fan-out gradients in passes of their own); the pooling, head and loss run
   * under tfjs' tape, whose gradient at the feature maps the stages' backward pass then takes, walked here in reverse.
   */
  private tapeFreeGradients(x: tf.Tensor, stage: number, loss: (outputs: tf.Tensor) => tf.Scalar, variables: tf.Variable[]) {
    return tf.tidy(() => {
      const tape: BackwardStep[] = [];
      const maps = convolutionalStages(new EagerRun(this, runContext(true, { tape })), x, stage, STAGE_COUNT);
      const run = new EagerRun(this, runContext(true));
      const mapsGradient = tape.length > 0 ? [maps] : [];
      const { value, grads } = tf
        .engine()
        .gradients(
          () => loss(head(run, pooledCodes(run, maps), this.numClasses, this.fineTuning)),
          [...mapsGradient, ...variables],
          undefined,
          true,
        );
      const filterGradients = tape.length > 0 ? backward(tape, maps, grads[0]) : new Map<string, tf.Tensor>();
      const named: tf.NamedTensorMap = {};
      variables.forEach((variable, i) => {
        const parts = [grads[i + mapsGradient.length], filterGradients.get(variable.name)].filter((g): g is tf.Tensor => g != null);
        if (parts.length > 0) named[variable.name] = parts.length === 1 ? parts[0] : tf.add(parts[0], parts[1]);
      });
      return { value, grads: named };
    });
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

/** Whether `backend` has the kernels a tape-free training pass calls (with BatchNorm folded, it then takes one). */
export function tapeFreeKernels(backend: string): boolean {
  return [SCALED_CONV, CONV_BACKWARD, 'MaxPoolGrad'].every((name) => tf.getKernel(name, backend) !== undefined);
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

/** The stem's MaxPool2d(3, stride 2, padding 1), as tfjs' MaxPool and MaxPoolGrad kernels take it. */
const STEM_POOL = { filterSize: 3, strides: 2, pad: 1 };

/** What a differentiable step of a tape-free pass keeps for its backward pass. */
type BackwardStep =
  | {
      kind: 'conv';
      x: tf.Tensor4D;
      y: tf.Tensor4D;
      filter: tf.Tensor4D;
      scale?: tf.Tensor1D;
      residual: tf.Tensor4D | null;
      attrs: ConvBackwardAttrs;
      /** The variable the filter is, where it trains. */
      filterName: string | null;
    }
  | { kind: 'maxPool'; x: tf.Tensor4D; y: tf.Tensor4D };

/** What every builder of one forward pass shares. */
interface RunContext {
  training: boolean;
  /** The tensors that carry a gradient. */
  differentiable: WeakSet<tf.Tensor>;
  handoff: Handoff;
  observe?: Observer;
  /** Set for a tape-free pass: its differentiable steps, in forward order. */
  tape?: BackwardStep[];
}

function runContext(training: boolean, extra: Pick<RunContext, 'observe' | 'tape'> = {}): RunContext {
  return { training, differentiable: new WeakSet(), handoff: new Handoff(), ...extra };
}

/**
 * A tape-free pass's backward pass, its steps in reverse from the feature maps' gradient: a tensor's gradients from its
 * readers are summed in the backward call of whichever reader runs last (the native kernel adds an `addend` into dx), and
 * each step's output is freed once its gradient is spent. Returns the trained filters' gradients by variable name.
 */
function backward(tape: BackwardStep[], maps: tf.Tensor, mapsGradient: tf.Tensor): Map<string, tf.Tensor> {
  const pending = new Map<tf.Tensor, tf.Tensor>([[maps, mapsGradient]]);
  const take = (t: tf.Tensor) => {
    const gradient = pending.get(t);
    pending.delete(t);
    return gradient as tf.Tensor4D | undefined;
  };
  const give = (t: tf.Tensor, gradient: tf.Tensor) => {
    const had = take(t);
    pending.set(t, had ? tf.add(had, gradient) : gradient);
    if (had) tf.dispose([had, gradient]);
  };
  const filterGradients = new Map<string, tf.Tensor>();
  for (const step of [...tape].reverse()) {
    const dy = take(step.y);
    if (!dy) throw new Error('a step of a tape-free pass got no gradient');
    if (step.kind === 'maxPool') {
      give(step.x, runKernelOutputs('MaxPoolGrad', { dy, input: step.x, output: step.y }, STEM_POOL)[0]);
      dy.dispose();
    } else {
      const { attrs } = step;
      const addend = attrs.inputGradient ? take(step.x) : undefined;
      const { x, y, filter, scale } = step;
      const outputs = nativeConvBackward({ dy, y, x, filter, ...(scale && { scale }), ...(addend && { addend }) }, attrs);
      if (!outputs) throw new Error(`a tape-free pass needs ${CONV_BACKWARD}`);
      // Read only here: freed, the data dz and dx took over from them has one holder (the next call may write it in place).
      tf.dispose(addend ? [dy, addend] : dy);
      const [dz, dx, dFilter] = [attrs.outputGradient, attrs.inputGradient, attrs.filterGradient].map((wanted) =>
        wanted ? outputs.shift() : undefined,
      );
      if (dz && step.residual) give(step.residual, dz);
      if (dx) give(x, dx);
      if (dFilter && step.filterName) filterGradients.set(step.filterName, dFilter);
    }
    step.y.dispose();
  }
  tf.dispose([...pending.values()]);
  return filterGradients;
}

/** One forward pass: the builder the architecture runs against, and which tensors carry a gradient. */
class EagerRun implements Builder<tf.Tensor> {
  constructor(
    private readonly owner: EagerResNet,
    private readonly context: RunContext,
    private readonly prefix = '',
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
    this.context.observe?.(this.path('add'), out);
    return this.mark(out, this.context.differentiable.has(x) || this.context.differentiable.has(identity));
  }

  /** The block's sum in conv3's epilogue where the kernel takes it; an observer sees conv3's own output, so not then. */
  residual(spec: ConvBn, x: tf.Tensor, identity: () => tf.Tensor): tf.Tensor {
    if (this.context.observe) return this.addRelu(this.convBn(spec, x), identity());
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
    const trainsConv = this.context.training && conv.trainable;
    if (this.context.training && bn.trainable) {
      const normalised = bn.apply(tf.conv2d(input as tf.Tensor4D, kernel, spec.stride, padding), { training: true }) as tf.Tensor;
      const out = this.mark(relu ? tf.relu(normalised) : normalised, true);
      return residual ? this.addRelu(out, residual) : out;
    }
    // A trainable filter changes every step: a folded copy of it (and its reorder) would be stale by the next validation.
    const folding = this.owner.folding(conv, bn, !conv.trainable);
    const weights = folding.filter ? { filter: folding.filter } : { filter: kernel, scale: folding.scale };
    const differentiable = (t: tf.Tensor | null) => t !== null && this.context.training && this.context.differentiable.has(t);
    const summand = residual && tf.getKernel(SCALED_CONV, tf.getBackend()) ? (residual as tf.Tensor4D) : null;
    const geometry = { strides: spec.stride, pad: padding, relu: relu || summand !== null, residual: summand };
    const { tape } = this.context;
    if (tape) {
      const wanted = { x: differentiable(x), filter: trainsConv, residual: differentiable(summand) };
      const filterName = trainsConv ? (conv.weights[0].read() as tf.Variable).name : null;
      const out = tapedConv(tape, input as tf.Tensor4D, weights, folding.shift, geometry, wanted, filterName);
      return this.mark(out, wanted.x || wanted.filter || wanted.residual, true);
    }
    // A tensor's first reader takes the gradients its later readers hand over (the native backward kernel adds them).
    const handing = tf.getKernel(CONV_BACKWARD, tf.getBackend()) !== undefined;
    const route = (t: tf.Tensor | null): GradientRoute =>
      !differentiable(t) ? 'none' : t && handing && this.context.handoff.takesFor(t) ? 'handed' : 'taped';
    // A later reader hands x's gradient over only along with its filter's, so its backward pass surely runs.
    const gradients = { x: route(x), filter: trainsConv, residual: route(summand) };
    if (gradients.x === 'handed' && !trainsConv) gradients.x = 'taped';
    const first = gradients.x === 'taped' && !this.context.handoff.takesFor(x);
    if (first) this.context.handoff.receiveFor(x);
    const out = foldedConv(input as tf.Tensor4D, weights, folding.shift, {
      ...geometry,
      gradients,
      hand: (tensor, gradient) => this.context.handoff.hand(tensor, gradient),
      ...(first && { take: () => this.context.handoff.take(x) }),
    });
    this.context.observe?.(convName, out);
    const marked = this.mark(out, gradients.x !== 'none' || gradients.filter || gradients.residual !== 'none');
    return residual && !summand ? this.addRelu(marked, residual) : marked;
  }

  maxPool(x: tf.Tensor): tf.Tensor {
    // One padded pool where the backend takes explicit padding: a padding layer's gradient is a slow strided slice.
    if (tf.getBackend() === 'tensorflow') return maxPoolLayers(this, x);
    const { tape } = this.context;
    if (!tape || !this.context.differentiable.has(x))
      return this.mark(tf.maxPool(x as tf.Tensor4D, 3, 2, 1), this.context.differentiable.has(x));
    // Its argmax kept outside tfjs' tape too, for MaxPoolGrad.
    const [y] = runKernelOutputs<tf.Tensor4D>('MaxPool', { x }, { ...STEM_POOL, [KEEP_WORKSPACE]: true });
    tape.push({ kind: 'maxPool', x: x as tf.Tensor4D, y });
    return this.mark(y, true, true);
  }

  leaf(_type: string, varName: string, _make: (name: string) => tf.layers.Layer, x: tf.Tensor): tf.Tensor {
    const layer = this.owner.layer(this.path(varName));
    const out = layer.apply(x, { training: this.context.training }) as tf.Tensor;
    return this.mark(out, this.context.differentiable.has(x) || (this.context.training && layer.trainableWeights.length > 0));
  }

  plain(name: string, _make: (name: string) => tf.layers.Layer, x: tf.Tensor): tf.Tensor {
    return this.mark(this.owner.layer(name).apply(x) as tf.Tensor, this.context.differentiable.has(x));
  }

  container(_type: string, varName: string, build: (inner: Builder<tf.Tensor>) => tf.Tensor): tf.Tensor {
    return build(new EagerRun(this.owner, this.context, this.path(varName)));
  }

  /** `taped`: the step is on a tape-free pass's tape; any other step there that carries a gradient would lose it. */
  private mark(tensor: tf.Tensor, differentiable: boolean, taped = false): tf.Tensor {
    if (!differentiable || !this.context.training) return tensor;
    if (this.context.tape && !taped) throw new Error(`a tape-free pass cannot take the gradient of ${this.prefix || 'a step'}`);
    this.context.differentiable.add(tensor);
    return tensor;
  }
}

/** How foldedConv runs: the layer's geometry, what it adds, and which gradients it passes back, and how. */
/** Where a gradient goes: back to tfjs' tape, handed to its tensor's first reader (Handoff), or nowhere (not computed). */
type GradientRoute = 'taped' | 'handed' | 'none';

interface ConvGeometry {
  strides: number;
  pad: Padding;
  relu: boolean;
  /** Added before the ReLU (this project's kernel only). */
  residual: tf.Tensor4D | null;
}

interface ConvCall extends ConvGeometry {
  gradients: { x: GradientRoute; filter: boolean; residual: GradientRoute };
  hand: (tensor: tf.Tensor, gradient: tf.Tensor) => void;
  /** A gradient of x handed over by a later reader of x, to add to this call's input gradient. */
  take?: () => tf.Tensor | undefined;
}

interface ConvWeights {
  filter: tf.Tensor4D;
  /** Per output channel, applied by the addon (SCALED_CONV). */
  scale?: tf.Tensor1D;
}

/** The forward kernel call: tf.fused.conv2d would split into conv, add and relu whenever a gradient is being taken. */
function convKernel(x: tf.Tensor4D, { filter, scale }: ConvWeights, bias: tf.Tensor1D, { strides, pad, relu, residual }: ConvGeometry) {
  const attrs = { strides, pad, dataFormat: 'NHWC' as const, dilations: 1, activation: relu ? 'relu' : 'linear' };
  const run = () =>
    scale || residual
      ? runKernelOutputs<tf.Tensor4D>(SCALED_CONV, { x, filter, bias, ...(scale && { scale }), ...(residual && { residual }) }, attrs)[0]
      : runKernelOutputs<tf.Tensor4D>('FusedConv2D', { x, filter, bias }, attrs)[0];
  return { attrs, run };
}

/** A convolution on a tape-free pass: the forward kernel, and the step on the tape where any gradient of it is wanted. */
function tapedConv(
  tape: BackwardStep[],
  x: tf.Tensor4D,
  weights: ConvWeights,
  bias: tf.Tensor1D,
  geometry: ConvGeometry,
  wanted: { x: boolean; filter: boolean; residual: boolean },
  filterName: string | null,
): tf.Tensor4D {
  const { attrs, run } = convKernel(x, weights, bias, geometry);
  const y = run();
  if (wanted.x || wanted.filter || wanted.residual) {
    const { filter, scale } = weights;
    const { relu, residual } = geometry;
    const backwardAttrs = { ...attrs, relu, outputGradient: wanted.residual, inputGradient: wanted.x, filterGradient: wanted.filter };
    const step: BackwardStep = { kind: 'conv', x, y, filter, ...(scale && { scale }), residual, attrs: backwardAttrs, filterName };
    // A second reader of x (a block's downsample) goes on the tape before the first (its conv1), so it is walked after it
    // and adds its input gradient into the one conv1 wrote: a stride-2 1x1 then adds into the pixels it read, where
    // walked first it would write zeros over all of x's gradient for conv1 to add to.
    const firstReader = wanted.x
      ? tape.findIndex((earlier) => earlier.x === x && earlier.kind === 'conv' && earlier.attrs.inputGradient)
      : -1;
    if (firstReader >= 0) tape.splice(firstReader, 0, step);
    else tape.push(step);
  }
  return y;
}

/**
 * Convolution (its filter times `scale` per output channel, if given), bias, residual and optional ReLU in one kernel, with
 * a gradient for only the inputs `gradients` names (tfjs' fused conv computes the input's and the bias's whether wanted or not).
 */
function foldedConv(x: tf.Tensor4D, weights: ConvWeights, bias: tf.Tensor1D, call: ConvCall): tf.Tensor4D {
  const { strides, pad, relu, residual, gradients } = call;
  // The addon scales the filter as it reorders it, and the gradient at the output on its way back; elsewhere a multiply does.
  const scale = weights.scale && tf.getKernel(SCALED_CONV, tf.getBackend()) ? weights.scale : undefined;
  const filter = weights.scale && !scale ? tf.mul<tf.Tensor4D>(weights.filter, weights.scale) : weights.filter;
  const { attrs, run } = convKernel(x, { filter, scale }, bias, call);
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
