import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { ModelConfig, Stage } from '../../schemas/model.js';
import { BatchNorm2d } from './batch-norm.js';
import { Dropout } from './dropout.js';

export type { ModelConfig };

/** Width of the CNN codes: layer4's channels after the average pool. */
export const FEATURE_DIM = 2048;
/** [blocks, bottleneck width] per stage, torchvision's resnet50. */
const STAGE_PLAN: ReadonlyArray<readonly [number, number]> = [
  [3, 64],
  [4, 128],
  [6, 256],
  [3, 512],
];
const EXPANSION = 4;
export const FINE_TUNING_HEAD = { hidden: [512, 256], dropout: [0.25, 0.5] } as const;

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
}

/** Records module calls while the functional graph is built, mirroring the torchvision module tree. */
class Scope {
  constructor(
    readonly node: ModuleNode,
    private readonly seeds: { next: number },
  ) {}

  path(varName: string): string {
    return this.node.path ? `${this.node.path}.${varName}` : varName;
  }

  seed(): number {
    return this.seeds.next++;
  }

  leaf(type: string, varName: string, layer: tf.layers.Layer, input: tf.SymbolicTensor): tf.SymbolicTensor {
    const output = layer.apply(input) as tf.SymbolicTensor;
    this.node.children.push({ type, varName, path: this.path(varName), output, layer, children: [] });
    return output;
  }

  container(type: string, varName: string, build: (inner: Scope) => tf.SymbolicTensor): tf.SymbolicTensor {
    const node: ModuleNode = { type, varName, path: this.path(varName), output: undefined as never, children: [] };
    this.node.children.push(node);
    node.output = build(new Scope(node, this.seeds));
    return node.output;
  }
}

function conv2d(scope: Scope, varName: string, x: tf.SymbolicTensor, filters: number, kernel: number, stride: number) {
  const name = scope.path(varName);
  const pad = (kernel - 1) / 2;
  // TF's 'same' pads asymmetrically at stride 2; PyTorch pads both sides, so pad explicitly there.
  const input = stride > 1 && pad > 0 ? zeroPad(`${name}.pad`, pad, x) : x;
  const layer = tf.layers.conv2d({
    name,
    filters,
    kernelSize: kernel,
    strides: stride,
    padding: stride === 1 && pad > 0 ? 'same' : 'valid',
    useBias: false,
    // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu")
    kernelInitializer: tf.initializers.varianceScaling({ scale: 2, mode: 'fanOut', distribution: 'normal', seed: scope.seed() }),
  });
  return scope.leaf('Conv2d', varName, layer, input);
}

function zeroPad(name: string, pad: number, x: tf.SymbolicTensor): tf.SymbolicTensor {
  return tf.layers.zeroPadding2d({ name, padding: pad }).apply(x) as tf.SymbolicTensor;
}

function batchNorm(scope: Scope, varName: string, x: tf.SymbolicTensor) {
  return scope.leaf('BatchNorm2d', varName, new BatchNorm2d({ name: scope.path(varName) }), x);
}

function relu(scope: Scope, x: tf.SymbolicTensor, call: number) {
  // One torch module called several times: every call is its own tfjs layer with a unique name.
  const name = `${scope.path('relu')}${call > 0 ? `_${call}` : ''}`;
  return scope.leaf('ReLU', 'relu', tf.layers.reLU({ name }), x);
}

function linear(scope: Scope, varName: string, x: tf.SymbolicTensor, units: number) {
  const fanIn = x.shape[x.shape.length - 1] as number;
  const bound = 1 / Math.sqrt(fanIn);
  const layer = tf.layers.dense({
    name: scope.path(varName),
    units,
    // PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
    kernelInitializer: tf.initializers.randomUniform({ minval: -bound, maxval: bound, seed: scope.seed() }),
    biasInitializer: tf.initializers.randomUniform({ minval: -bound, maxval: bound, seed: scope.seed() }),
  });
  return scope.leaf('Linear', varName, layer, x);
}

/** torchvision's Bottleneck (v1.5): the stride sits on the 3x3 conv. */
function bottleneck(scope: Scope, x: tf.SymbolicTensor, width: number, stride: number, downsample: boolean) {
  const outChannels = width * EXPANSION;
  let out = conv2d(scope, 'conv1', x, width, 1, 1);
  out = batchNorm(scope, 'bn1', out);
  out = relu(scope, out, 0);
  out = conv2d(scope, 'conv2', out, width, 3, stride);
  out = batchNorm(scope, 'bn2', out);
  out = relu(scope, out, 1);
  out = conv2d(scope, 'conv3', out, outChannels, 1, 1);
  out = batchNorm(scope, 'bn3', out);
  const identity = downsample
    ? scope.container('Sequential', 'downsample', (ds) => batchNorm(ds, '1', conv2d(ds, '0', x, outChannels, 1, stride)))
    : x;
  const sum = tf.layers.add({ name: scope.path('add') }).apply([out, identity]) as tf.SymbolicTensor;
  return relu(scope, sum, 2);
}

function backbone(scope: Scope, input: tf.SymbolicTensor): tf.SymbolicTensor {
  let x = conv2d(scope, 'conv1', input, 64, 7, 2);
  x = batchNorm(scope, 'bn1', x);
  x = relu(scope, x, 0);
  // Zero padding equals PyTorch's -inf padding here: the input is post-ReLU, so never negative.
  const maxpool = tf.layers.maxPooling2d({ name: 'maxpool', poolSize: 3, strides: 2, padding: 'valid' });
  x = scope.leaf('MaxPool2d', 'maxpool', maxpool, zeroPad('maxpool.pad', 1, x));
  let inChannels = 64;
  STAGE_PLAN.forEach(([blocks, width], stage) => {
    x = scope.container('Sequential', `layer${stage + 1}`, (layer) => {
      let y = x;
      for (let block = 0; block < blocks; block++) {
        const stride = block === 0 && stage > 0 ? 2 : 1;
        const downsample = block === 0 && (stride !== 1 || inChannels !== width * EXPANSION);
        y = layer.container('Bottleneck', String(block), (b) => bottleneck(b, y, width, stride, downsample));
        inChannels = width * EXPANSION;
      }
      return y;
    });
  });
  // AdaptiveAvgPool2d((1, 1)): pool over whatever spatial size layer4 has (ceil(size / 32)).
  const avgpool = tf.layers.averagePooling2d({
    name: 'avgpool',
    poolSize: x.shape.slice(1, 3) as [number, number],
    strides: 1,
    padding: 'valid',
  });
  x = scope.leaf('AdaptiveAvgPool2d', 'avgpool', avgpool, x);
  return tf.layers.flatten({ name: 'flatten' }).apply(x) as tf.SymbolicTensor;
}

function fineTuningHead(scope: Scope, features: tf.SymbolicTensor, numClasses: number) {
  return scope.container('Sequential', 'fc', (fc) => {
    let x = features;
    let index = 0;
    FINE_TUNING_HEAD.hidden.forEach((units, i) => {
      x = linear(fc, String(index++), x, units);
      x = fc.leaf('ReLU', String(index), tf.layers.reLU({ name: fc.path(String(index++)) }), x);
      const dropout = new Dropout({ name: fc.path(String(index)), rate: FINE_TUNING_HEAD.dropout[i], seed: fc.seed() });
      x = fc.leaf('Dropout', String(index++), dropout, x);
    });
    return linear(fc, String(index), x, numClasses);
  });
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

export function* leaves(node: ModuleNode): Generator<ModuleNode> {
  if (node.children.length === 0) yield node;
  for (const child of node.children) yield* leaves(child);
}

export function buildResNet50(requested: ModelConfig): ResNet50 {
  const parsed = ModelConfig.safeParse(requested);
  if (!parsed.success) throw new RangeError(`invalid model config: ${z.prettifyError(parsed.error)}`);
  const config = parsed.data;
  const input = tf.input({ shape: [config.inputSize, config.inputSize, 3], name: 'input' });
  const tree: ModuleNode = { type: 'ResNet', varName: 'ResNet', path: '', output: input, children: [] };
  const scope = new Scope(tree, { next: config.seed ?? 0 });
  const features = backbone(scope, input);
  const logits =
    config.mode === 'fine_tuning' ? fineTuningHead(scope, features, config.numClasses) : linear(scope, 'fc', features, config.numClasses);
  tree.output = logits;
  const model = tf.model({ inputs: input, outputs: logits, name: `resnet50_${config.mode}` });
  applyTrainability(tree, config);
  return { model, tree, config };
}
