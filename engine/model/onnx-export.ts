import type * as tf from '../tf.js';
import type { ModelMetadata } from '../../schemas/artifacts.js';
import { backbone, head, reluName, type Builder, type ConvBn } from './architecture.js';
import { foldedConvBn } from './batch-norm.js';
import { Message, metadataEntry, node, tensor, valueInfo, type AttributeValue, type Encoded } from './onnx-proto.js';
import type { ResNet50 } from './resnet50.js';
import { INPUT_RANGE, type Int8Description } from './fused-backbone.js';

/** Opset 17 (ONNX 1.12): every runtime in use reads it; IR version 8 goes with it. */
export const ONNX_OPSET = 17;
const IR_VERSION = 8;
export const ONNX_INPUT = 'input';
export const ONNX_OUTPUT = 'logits';

/** A tfjs HWIO filter of `o` output channels and `k` x `k` taps as ONNX's OIHW. */
function toOihw<T extends Float32Array | Int8Array>(hwio: T, k: number, o: number): T {
  const c = hwio.length / (k * k * o);
  const oihw = new (hwio.constructor as new (length: number) => T)(hwio.length);
  for (let h = 0; h < k; h++)
    for (let w = 0; w < k; w++)
      for (let i = 0; i < c; i++)
        for (let out = 0; out < o; out++) oihw[((out * c + i) * k + h) * k + w] = hwio[((h * k + w) * c + i) * o + out];
  return oihw;
}

/** A value of the graph: its name, and its shape as the architecture reads it (NHWC, batch null). */
interface OnnxValue {
  name: string;
  shape: ReadonlyArray<number | null>;
  /** With a float residual stream: the value rounded as convolutions read it. */
  rounded?: string;
}

interface Graph {
  nodes: Message[];
  initializers: Message[];
  layers: Map<string, tf.layers.Layer>;
  /** The int8 backbone to write as QuantizeLinear/DequantizeLinear pairs where it rounds, and its s8 filters. */
  int8?: Int8Description;
}

/** Walks the architecture as it runs at prediction, emitting ONNX nodes: every BatchNorm folded into its convolution. */
class OnnxBuilder implements Builder<OnnxValue> {
  constructor(
    private readonly graph: Graph,
    private readonly prefix = '',
  ) {}

  path(varName: string): string {
    return this.prefix ? `${this.prefix}.${varName}` : varName;
  }

  seed(): number {
    return 0;
  }

  convBn(spec: ConvBn, x: OnnxValue): OnnxValue {
    const convPath = this.path(spec.conv);
    const [k, o] = [spec.kernel, spec.filters];
    const quantized = this.graph.int8?.convs.get(convPath);
    const folded = quantized ?? foldedConvBn(this.layer(convPath), this.layer(this.path(spec.bn)));
    const dims = [o, folded.filter.length / (k * k * o), k, k];
    const weight = quantized
      ? this.dequantizedFilter(convPath, toOihw(quantized.filter, k, o), dims, quantized.scales)
      : this.initializer(`${convPath}.weight`, dims, toOihw(folded.filter, k, o));
    const pad = (k - 1) / 2;
    const [, h, w] = x.shape as number[];
    const outSize = (size: number) => Math.floor((size + 2 * pad - k) / spec.stride) + 1;
    // A float residual stream enters a convolution rounded, as the int8 backbone feeds it.
    const inputs = [x.rounded ?? x.name, weight, this.initializer(`${convPath}.bias`, [o], folded.bias)];
    const conv = this.emit('Conv', convPath, inputs, [null, outSize(h), outSize(w), o], {
      kernel_shape: [k, k],
      strides: [spec.stride, spec.stride],
      pads: [pad, pad, pad, pad],
    });
    return this.rounded(spec.reluCall === undefined ? conv : this.relu(conv, spec.reluCall), convPath);
  }

  addRelu(x: OnnxValue, identity: OnnxValue, reluCall: number): OnnxValue {
    const out = this.relu(this.emit('Add', this.path('add'), [x.name, identity.name], x.shape), reluCall);
    if (!this.graph.int8) return out;
    const rounded = this.rounded(out, this.path('add'));
    // A float residual stream is rounded only on its way into a convolution.
    return this.graph.int8.residual === 'fp32' ? { ...out, rounded: rounded.name } : rounded;
  }

  /** An s8 filter (OIHW) dequantized per output channel, as the int8 backbone's convolution reads it. */
  private dequantizedFilter(convPath: string, oihw: Int8Array, dims: number[], scales: Float32Array): string {
    const o = dims[0];
    const inputs = [
      this.initializer(`${convPath}.weight_quantized`, dims, oihw),
      this.initializer(`${convPath}.weight_scale`, [o], scales),
      this.initializer(`${convPath}.weight_zero_point`, [o], new Int8Array(o)),
    ];
    return this.emit('DequantizeLinear', `${convPath}.weight`, inputs, dims, { axis: 0 }).name;
  }

  /** `x` rounded as the int8 backbone rounds the tensor it calls `name` (a QuantizeLinear/DequantizeLinear pair), or as it is where it stays float. */
  rounded(x: OnnxValue, name: string): OnnxValue {
    const rounding = this.graph.int8?.rounded.get(name);
    if (!rounding) return x;
    const scale = this.initializer(`${x.name}.scale`, [], Float32Array.of(rounding.scale));
    const zero = this.initializer(`${x.name}.zero_point`, [], rounding.type === 'u8' ? new Uint8Array(1) : new Int8Array(1));
    const q = this.emit('QuantizeLinear', `${x.name}.quantized`, [x.name, scale, zero], x.shape);
    return this.emit('DequantizeLinear', `${x.name}.rounded`, [q.name, scale, zero], x.shape);
  }

  maxPool(x: OnnxValue): OnnxValue {
    const [, h, w, c] = x.shape as number[];
    const out = (size: number) => Math.floor((size + 2 - 3) / 2) + 1;
    return this.emit('MaxPool', this.path('maxpool'), [x.name], [null, out(h), out(w), c], {
      kernel_shape: [3, 3],
      strides: [2, 2],
      pads: [1, 1, 1, 1],
    });
  }

  leaf(type: string, varName: string, _make: unknown, x: OnnxValue): OnnxValue {
    const name = this.path(varName);
    switch (type) {
      case 'Linear':
        return this.linear(name, x);
      case 'ReLU':
        return this.emit('Relu', name, [x.name], x.shape);
      case 'Dropout':
        return x; // identity at prediction
      case 'AdaptiveAvgPool2d':
        return this.emit('GlobalAveragePool', name, [x.name], [null, 1, 1, x.shape[3]]);
      default:
        throw new Error(`no ONNX export for a ${type} module (${name})`);
    }
  }

  plain(name: string, _make: unknown, x: OnnxValue): OnnxValue {
    if (name !== 'flatten') throw new Error(`no ONNX export for the layer ${name}`);
    return this.emit('Flatten', name, [x.name], [null, x.shape.slice(1).reduce<number>((a, b) => a * (b ?? 1), 1)], { axis: 1 });
  }

  container(_type: string, varName: string, build: (inner: Builder<OnnxValue>) => OnnxValue): OnnxValue {
    return build(new OnnxBuilder(this.graph, this.path(varName)));
  }

  private linear(name: string, x: OnnxValue): OnnxValue {
    const [kernel, bias] = this.layer(name).getWeights();
    const [inputs, units] = kernel.shape;
    const weightName = this.initializer(`${name}.weight`, [inputs, units], kernel.dataSync() as Float32Array);
    const biasName = this.initializer(`${name}.bias`, [units], bias.dataSync() as Float32Array);
    return this.emit('Gemm', name, [x.name, weightName, biasName], [null, units]);
  }

  private relu(x: OnnxValue, call: number): OnnxValue {
    return this.emit('Relu', reluName(this.path('relu'), call), [x.name], x.shape);
  }

  private layer(name: string): tf.layers.Layer {
    const layer = this.graph.layers.get(name);
    if (!layer) throw new Error(`the model has no layer ${name}`);
    return layer;
  }

  private initializer(name: string, dims: number[], values: Float32Array | Uint8Array | Int8Array): string {
    this.graph.initializers.push(tensor(name, dims, values));
    return name;
  }

  private emit(
    opType: string,
    name: string,
    inputs: string[],
    shape: ReadonlyArray<number | null>,
    attributes?: Record<string, AttributeValue>,
  ): OnnxValue {
    this.graph.nodes.push(node(opType, name, inputs, [name], attributes));
    return { name, shape };
  }
}

/** What a runtime needs besides the graph: classes and preprocessing as JSON, under keys anyone can read. */
function metadataProps(metadata: ModelMetadata, label: string): Record<string, string> {
  return {
    class_names: JSON.stringify(metadata.classNames),
    preprocessing: JSON.stringify(metadata.preprocessing),
    input_description:
      'RGB, resized (shorter side to preprocessing.resize, bilinear), centre-cropped to preprocessing.crop, scaled to [0, 1], ' +
      'then (x - mean) / std per channel; NCHW float32',
    mode: metadata.mode,
    checkpoint: label,
    epochs: String(metadata.epoch ?? metadata.epochs ?? ''),
  };
}

/**
 * The model in inference mode as an ONNX ModelProto: NCHW float input `input` with a dynamic batch,
 * output `logits`, BatchNorms folded into convolution biases, dropout removed. With `int8`, the backbone
 * as the int8 predictions run it, in ONNX's QDQ form: s8 filters dequantized per output channel, and a
 * QuantizeLinear/DequantizeLinear pair wherever a tensor is rounded (runtimes fuse them into int8 kernels).
 */
export function exportOnnx(
  resnet: ResNet50,
  metadata: ModelMetadata,
  label: string,
  producerVersion: string,
  int8?: Int8Description,
): Encoded {
  const graph: Graph = { nodes: [], initializers: [], layers: new Map(resnet.model.layers.map((l) => [l.name, l])), int8 };
  const builder = new OnnxBuilder(graph);
  const size = resnet.config.inputSize;
  const input = builder.rounded({ name: ONNX_INPUT, shape: [null, size, size, 3] }, INPUT_RANGE);
  const last = head(builder, backbone(builder, input), resnet.config.numClasses, resnet.config.mode === 'fine_tuning');
  graph.nodes.push(node('Identity', ONNX_OUTPUT, [last.name], [ONNX_OUTPUT]));

  const graphProto = new Message();
  for (const n of graph.nodes) graphProto.message(1, n);
  graphProto.string(2, `resnet50_${resnet.config.mode}`);
  for (const init of graph.initializers) graphProto.message(5, init);
  graphProto.message(11, valueInfo(ONNX_INPUT, ['batch', 3, size, size]));
  graphProto.message(12, valueInfo(ONNX_OUTPUT, ['batch', resnet.config.numClasses]));

  const model = new Message()
    .int(1, IR_VERSION)
    .string(2, 'retrain')
    .string(3, producerVersion)
    .message(7, graphProto)
    .message(8, new Message().string(1, '').int(2, ONNX_OPSET));
  const precision: Record<string, string> = int8 ? { precision: 'int8', residual_stream: int8.residual } : { precision: 'fp32' };
  for (const [k, v] of Object.entries({ ...metadataProps(metadata, label), ...precision })) model.message(14, metadataEntry(k, v));
  return model.encoded();
}
