import * as tf from '../tf.js';
import { z } from 'zod';
import { mixSeed } from '../../common/random.js';
import { ModelConfig, Stage } from '../../schemas/model.js';
import { BatchNorm2d } from './batch-norm.js';
import { backbone, head, maxPoolLayers, reluName, STAGE_COUNT, zeroPadLayer, type Builder, type ConvBn } from './architecture.js';
import { EagerResNet, type Observer } from './eager-resnet.js';
import { truncatedNormal } from './truncated-normal.js';
import type { Network } from './network.js';

export type { ModelConfig };

/** Width of the CNN codes: layer4's channels after the average pool. */
export const FEATURE_DIM = 2048;
export { FINE_TUNING_HEAD } from './architecture.js';

/** One module call as torchinfo records it: leaves own a tfjs layer, containers own children. */
export interface ModuleNode {
  type: string;
  varName: string;
  path: string;
  output: tf.SymbolicTensor;
  layer?: tf.layers.Layer;
  children: ModuleNode[];
}

export interface ResNet50 {
  model: tf.LayersModel;
  tree: ModuleNode;
  config: ModelConfig;
  /** The whole network run eagerly, BatchNorms in inference mode folded into their convolutions: what jobs train and predict with. */
  network: Network;
  /** The 2048-D codes of a batch (the backbone in inference mode), run the same way. */
  features(x: tf.Tensor): tf.Tensor;
  /** The output of the stages before `stage` (0 the stem .. 4 layer4, as Stage counts), in inference mode; `observe` sees its tensors. */
  stagesBefore(x: tf.Tensor, stage: number, observe?: Observer): tf.Tensor;
  /** The classifier on 2048-D codes, in inference mode. */
  classify(codes: tf.Tensor): tf.Tensor;
  /** The network from `stage` on, taking what stagesBefore(stage) gives: frozen stages computed once feed it. */
  networkFrom(stage: number): Network;
  /** The model, and the folded filters the eager runs keep. */
  dispose(): void;
}

type Initializer = ReturnType<typeof tf.initializers.zeros>;
const VarianceScaling = tf.initializers.varianceScaling({}).constructor as new (
  args: Parameters<typeof tf.initializers.varianceScaling>[0],
) => Initializer;

/**
 * torchvision's kaiming_normal_(mode="fan_out") as tfjs' VarianceScaling draws it for a channels-last filter: the
 * same class and config in model.json, the same float32 values, drawn by truncatedNormal in one loop.
 */
class KaimingNormalFanOut extends VarianceScaling {
  constructor(private readonly drawSeed: number) {
    super({ scale: 2, mode: 'fanOut', distribution: 'normal', seed: drawSeed });
  }

  override apply(shape: number[], dtype?: tf.DataType): tf.Tensor {
    if (shape.length !== 4 || (dtype ?? 'float32') !== 'float32') return super.apply(shape, dtype);
    // tfjs' computeFans: the receptive field (kh * kw) times the output channels.
    const fanOut = shape[3] * shape[0] * shape[1];
    return truncatedNormal(shape, 0, Math.sqrt(2 / Math.max(1, fanOut)), this.drawSeed);
  }
}

/** Builds the tfjs layers of the architecture and records module calls, mirroring the torchvision module tree. */
class SymbolicBuilder implements Builder<tf.SymbolicTensor> {
  constructor(
    readonly node: ModuleNode,
    private readonly seeds: { base: number; next: number },
    private readonly randomBackbone: boolean,
  ) {}

  path(varName: string): string {
    return this.node.path ? `${this.node.path}.${varName}` : varName;
  }

  seed(): number {
    // tfjs draws from Math.random when a normal initializer's seed is 0: never hand it one.
    return mixSeed(this.seeds.base, this.seeds.next++) || 1;
  }

  convBn(spec: ConvBn, x: tf.SymbolicTensor): tf.SymbolicTensor {
    const name = this.path(spec.conv);
    const pad = (spec.kernel - 1) / 2;
    // TF's 'same' pads asymmetrically at stride 2; PyTorch pads both sides, so pad explicitly there.
    const input = spec.stride > 1 && pad > 0 ? this.plain(`${name}.pad`, (padName) => zeroPadLayer(padName, pad), x) : x;
    const conv = tf.layers.conv2d({
      name,
      filters: spec.filters,
      kernelSize: spec.kernel,
      strides: spec.stride,
      padding: spec.stride === 1 && pad > 0 ? 'same' : 'valid',
      useBias: false,
      kernelInitializer: this.convInitializer(),
    });
    let out = this.record('Conv2d', spec.conv, conv, input);
    out = this.record('BatchNorm2d', spec.bn, new BatchNorm2d({ name: this.path(spec.bn) }), out);
    return spec.reluCall === undefined ? out : this.relu(out, spec.reluCall);
  }

  private convInitializer(): ReturnType<typeof tf.initializers.zeros> {
    // Drawn or not, the seed is taken: the head's seeds stay the same either way.
    const seed = this.seed();
    // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu")
    return this.randomBackbone ? new KaimingNormalFanOut(seed) : tf.initializers.zeros();
  }

  addRelu(x: tf.SymbolicTensor, identity: tf.SymbolicTensor, reluCall: number): tf.SymbolicTensor {
    const sum = this.plain(this.path('add'), (name) => tf.layers.add({ name }), [x, identity]);
    return this.relu(sum, reluCall);
  }

  maxPool(x: tf.SymbolicTensor): tf.SymbolicTensor {
    return maxPoolLayers<tf.SymbolicTensor>(this, x);
  }

  leaf(type: string, varName: string, make: (name: string) => tf.layers.Layer, x: tf.SymbolicTensor): tf.SymbolicTensor {
    return this.record(type, varName, make(this.path(varName)), x);
  }

  plain(name: string, make: (name: string) => tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]): tf.SymbolicTensor {
    return make(name).apply(x) as tf.SymbolicTensor;
  }

  container(type: string, varName: string, build: (inner: Builder<tf.SymbolicTensor>) => tf.SymbolicTensor): tf.SymbolicTensor {
    const node: ModuleNode = { type, varName, path: this.path(varName), output: undefined as never, children: [] };
    this.node.children.push(node);
    node.output = build(new SymbolicBuilder(node, this.seeds, this.randomBackbone));
    return node.output;
  }

  private relu(x: tf.SymbolicTensor, call: number): tf.SymbolicTensor {
    // One torch module called several times: every call is its own tfjs layer with a unique name.
    return this.record('ReLU', 'relu', tf.layers.reLU({ name: reluName(this.path('relu'), call) }), x);
  }

  private record(type: string, varName: string, layer: tf.layers.Layer, input: tf.SymbolicTensor): tf.SymbolicTensor {
    const output = layer.apply(input) as tf.SymbolicTensor;
    this.node.children.push({ type, varName, path: this.path(varName), output, layer, children: [] });
    return output;
  }
}

export function stageOf(path: string): Stage | 'fc' {
  const head = path.split('.')[0];
  if (head === 'fc') return 'fc';
  return (head.startsWith('layer') ? head : 'conv1') as Stage;
}

/**
 * Marks what trains for the mode, as the seed's notebook does: `pretrained` freezes nothing (a pretrained
 * job trains nothing, but its summary is torchvision's model as is), `feature_extraction` only the new head,
 * `fine_tuning` the stages from `trainableFrom` on. BatchNorm2d layers that are not trainable run in inference mode.
 */
function applyTrainability(tree: ModuleNode, config: ModelConfig): void {
  const stages = Stage.options;
  const firstTrainable = {
    pretrained: 0,
    feature_extraction: stages.length,
    fine_tuning: stages.indexOf(config.fineTuning?.trainableFrom ?? 'conv1'),
  }[config.mode];
  const freezeBatchNorm = config.mode === 'fine_tuning' && (config.fineTuning?.freezeBatchNorm ?? true);
  for (const node of leaves(tree)) {
    if (!node.layer) continue;
    const stage = stageOf(node.path);
    const stageTrains = stage === 'fc' || stages.indexOf(stage) >= firstTrainable;
    node.layer.trainable = stageTrains && !(node.layer instanceof BatchNorm2d && freezeBatchNorm);
  }
}

/** Nothing trains from here on: frozen convolutions keep their BatchNorm-folded, reordered filters from one batch to the next. */
export function freeze(resnet: ResNet50): void {
  for (const layer of resnet.model.layers) layer.trainable = false;
}

export function* leaves(node: ModuleNode): Generator<ModuleNode> {
  if (node.children.length === 0) yield node;
  for (const child of node.children) yield* leaves(child);
}

export interface BuildOptions {
  /**
   * false: the backbone's filters start at zero instead of seeded draws (~0.65 s of truncated normals
   * on the CPU), for a caller that loads them next or never reads them. The head is drawn either way.
   */
  randomBackbone?: boolean;
}

export function buildResNet50(requested: ModelConfig, { randomBackbone = true }: BuildOptions = {}): ResNet50 {
  const parsed = ModelConfig.safeParse(requested);
  if (!parsed.success) throw new RangeError(`invalid model config: ${z.prettifyError(parsed.error)}`);
  const config = parsed.data;
  const input = tf.input({ shape: [config.inputSize, config.inputSize, 3], name: 'input' });
  const tree: ModuleNode = { type: 'ResNet', varName: 'ResNet', path: '', output: input, children: [] };
  const builder = new SymbolicBuilder(tree, { base: config.seed ?? 0, next: 0 }, randomBackbone);
  const logits = head<tf.SymbolicTensor>(
    builder,
    backbone<tf.SymbolicTensor>(builder, input),
    config.numClasses,
    config.mode === 'fine_tuning',
  );
  tree.output = logits;
  const model = tf.model({ inputs: input, outputs: logits, name: `resnet50_${config.mode}` });
  applyTrainability(tree, config);
  const eager = new EagerResNet(model, config.numClasses, config.mode === 'fine_tuning');
  return {
    model,
    tree,
    config,
    network: eager.network,
    features: (x) => eager.stagesBefore(x, STAGE_COUNT),
    stagesBefore: (x, stage, observe) => eager.stagesBefore(x, stage, observe),
    classify: (codes) => eager.classify(codes),
    networkFrom: (stage) => eager.networkFrom(stage),
    dispose: () => {
      eager.dispose();
      model.dispose();
    },
  };
}
