import { createHash } from 'node:crypto';
import * as tf from '../tf.js';
import { readJson, type ArtifactStore } from '../../common/artifact-store.js';
import { FROZEN_SOURCE_KEY, frozenSourceIn, type FrozenSource, TfjsModelJson } from '../../schemas/artifacts.js';
import { ModelConfig } from '../../schemas/model.js';
import './batch-norm.js';
import { buildResNet50, type ResNet50 } from './resnet50.js';
import { importTorchvisionWeights } from './torchvision-weights.js';
import type { WasmBackend } from '../native/kernels/heap.js';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';

const join = (prefix: string, name: string) => (prefix ? `${prefix}/${name}` : name);

/**
 * Reads a saved model from the artifact store as tfjs' IOHandler (tfjs' own `file://` handler exists only
 * in tfjs-node). Layout is tfjs' layers format: model.json + one weights file.
 */
export function storeHandler(store: ArtifactStore, prefix: string): Required<Pick<tf.io.IOHandler, 'load'>> {
  return {
    async load(): Promise<tf.io.ModelArtifacts> {
      const modelJson = await readJson(store, join(prefix, MODEL_JSON), TfjsModelJson);
      if (!modelJson) throw new Error(`no ${MODEL_JSON} at ${prefix}`);
      const weightSpecs = modelJson.weightsManifest.flatMap((group) => group.weights);
      const paths = modelJson.weightsManifest.flatMap((group) => group.paths).map((p) => p.replace(/^\.\//, ''));
      if (paths.some((p) => p.includes('/'))) throw new Error(`${MODEL_JSON} names weights outside its folder`);
      const joined = Buffer.concat(await Promise.all(paths.map((p) => store.read(join(prefix, p)))));
      return {
        modelTopology: modelJson.modelTopology as tf.io.ModelArtifacts['modelTopology'],
        format: modelJson.format,
        generatedBy: modelJson.generatedBy,
        convertedBy: modelJson.convertedBy,
        weightSpecs,
        weightData: joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength),
        userDefinedMetadata: modelJson.userDefinedMetadata as tf.io.ModelArtifacts['userDefinedMetadata'],
      };
    },
  };
}

const CONFIG_KEY = 'retrainModelConfig';

/** Weights of layers that train: a model saved with a frozen source keeps these alone. */
export const ownWeights = (resnet: ResNet50) => resnet.model.layers.filter((layer) => layer.trainable).flatMap((layer) => layer.weights);

/** Whether some layer of the model is frozen (its weights are those it started from). */
export const hasFrozenLayers = (resnet: ResNet50) => resnet.model.layers.some((layer) => !layer.trainable && layer.weights.length > 0);

/**
 * Saves in tfjs' layers format (what tf.loadLayersModel reads), the weights streamed one tensor at a time
 * (tfjs' model.save holds every weight twice, copied out and concatenated). model.json is written last,
 * so a model.json always describes complete weights. With `frozenFrom`, only the weights of layers that
 * train are written, and model.json names where the frozen ones are (they are the start weights, unchanged).
 */
export async function saveModel(
  resnet: ResNet50,
  store: ArtifactStore,
  prefix: string,
  frozenFrom: FrozenSource | null = null,
): Promise<void> {
  const { model } = resnet;
  const saved = frozenFrom ? ownWeights(resnet) : model.weights;
  const weights = saved.map((w) => ({ name: w.originalName, tensor: w.read() }));
  await store.write(join(prefix, WEIGHTS_BIN), tensorBytes(weights.map((w) => w.tensor)));
  const modelJson: TfjsModelJson = {
    format: 'layers-model',
    generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
    convertedBy: null,
    modelTopology: model.toJSON(null, false) as TfjsModelJson['modelTopology'],
    weightsManifest: [{ paths: [`./${WEIGHTS_BIN}`], weights: weights.map(({ name, tensor }) => weightSpec(name, tensor)) }],
    // Plain JSON only: no undefined members.
    userDefinedMetadata: {
      [CONFIG_KEY]: JSON.parse(JSON.stringify(resnet.config)) as object,
      ...(frozenFrom ? { [FROZEN_SOURCE_KEY]: frozenFrom } : {}),
    },
  };
  await store.write(join(prefix, MODEL_JSON), JSON.stringify(modelJson));
}

export function weightSpec(name: string, tensor: tf.Tensor): { name: string; shape: number[]; dtype: 'float32' | 'int32' } {
  if (tensor.dtype !== 'float32' && tensor.dtype !== 'int32')
    throw new Error(`${name} is ${tensor.dtype}: only float32 and int32 are saved`);
  return { name, shape: tensor.shape, dtype: tensor.dtype };
}

/**
 * Tensors' bytes one after another (tf.io.encodeWeights' layout), one tensor at a time: on wasm straight
 * from its heap (nothing runs tfjs while a model is written), else copied out. A copy goes to new memory,
 * whose first touch was the slow part: 185 MB of Adam's moments took 160-200 ms to copy on this VM.
 */
export async function* tensorBytes(tensors: readonly tf.Tensor[]): AsyncGenerator<Uint8Array> {
  const heap = tf.getBackend() === 'wasm' ? (tf.backend() as WasmBackend) : null;
  for (const tensor of tensors) {
    const values = heap ? heap.typedArrayFromHeap(tensor) : ((await tensor.data()) as Float32Array | Int32Array);
    yield new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  }
}

/**
 * Rebuilds the model from the config stored in model.json and loads its weights by name, so the
 * result has the module tree (summary, torchvision export) and not only the tfjs graph.
 */
export async function loadModel(store: ArtifactStore, prefix: string): Promise<ResNet50> {
  const artifacts = await storeHandler(store, prefix).load();
  const config = ModelConfig.safeParse(artifacts.userDefinedMetadata?.[CONFIG_KEY]);
  if (!config.success) throw new Error(`${join(prefix, MODEL_JSON)} has no valid ${CONFIG_KEY}: not a checkpoint written by this service`);
  const resnet = buildResNet50(config.data, { randomBackbone: false });
  try {
    await setWeightsFrom(resnet, artifacts, store, prefix);
  } catch (error) {
    resnet.dispose();
    throw error;
  }
  return resnet;
}

/** Loads a saved model's weights, by name and strictly, into a model built from the same config. */
export async function loadWeightsInto(resnet: ResNet50, store: ArtifactStore, prefix: string): Promise<void> {
  await setWeightsFrom(resnet, await storeHandler(store, prefix).load(), store, prefix);
}

/** The frozen weights from their source, checked against the hash the model was saved with. */
async function loadFrozen(resnet: ResNet50, store: ArtifactStore, source: FrozenSource): Promise<void> {
  const file = await store.read(source.key).catch((error: Error) => {
    throw new Error(`the frozen weights at ${source.key} cannot be read: ${error.message}`);
  });
  const sha256 = createHash('sha256').update(file).digest('hex');
  if (sha256 !== source.sha256)
    throw new Error(`the frozen weights at ${source.key} changed (sha256 ${sha256}, saved with ${source.sha256})`);
  importTorchvisionWeights(resnet, file, { scope: 'frozen' });
}

async function setWeightsFrom(resnet: ResNet50, artifacts: tf.io.ModelArtifacts, store: ArtifactStore, prefix: string): Promise<void> {
  if (!artifacts.weightData || !artifacts.weightSpecs) throw new Error('the saved model has no weights');
  const frozenFrom = frozenSourceIn(artifacts.userDefinedMetadata);
  if (frozenFrom) {
    await loadFrozen(resnet, store, frozenFrom);
    const own = new Set(ownWeights(resnet).map((w) => w.originalName));
    const saved = artifacts.weightSpecs.map((spec) => spec.name);
    if (saved.length !== own.size || saved.some((name) => !own.has(name)))
      throw new Error(`${join(prefix, MODEL_JSON)} does not hold exactly the weights of the layers that train`);
  }
  const weights = tf.io.decodeWeights(artifacts.weightData, artifacts.weightSpecs);
  try {
    resnet.model.loadWeights(weights, !frozenFrom);
  } finally {
    tf.dispose(Object.values(weights));
  }
}
