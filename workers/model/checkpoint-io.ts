import * as tf from '@tensorflow/tfjs';
import { LocalArtifactStore, type ArtifactStore } from '../../services/artifacts/artifact-store.js';
import './batch-norm.js';
import { buildResNet50, type ModelConfig, type ResNet50 } from './resnet50.js';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';

interface ModelJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  modelTopology: object;
  weightsManifest: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
  userDefinedMetadata?: { [key: string]: object };
}

const join = (prefix: string, name: string) => (prefix ? `${prefix}/${name}` : name);

/**
 * A tfjs IOHandler over the artifact store, so it works on every backend (tfjs' own `file://` handler
 * exists only in tfjs-node). Layout is tfjs' layers format: model.json + one weights file; model.json
 * is written last, so a model.json always describes complete weights.
 */
export function storeHandler(store: ArtifactStore, prefix: string): Required<Pick<tf.io.IOHandler, 'save' | 'load'>> {
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      const weights = artifacts.weightData ? new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData)) : new Uint8Array();
      const modelJson: ModelJson = {
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        modelTopology: artifacts.modelTopology as object,
        weightsManifest: [{ paths: [`./${WEIGHTS_BIN}`], weights: artifacts.weightSpecs ?? [] }],
        userDefinedMetadata: artifacts.userDefinedMetadata,
      };
      await store.write(join(prefix, WEIGHTS_BIN), weights);
      await store.write(join(prefix, MODEL_JSON), JSON.stringify(modelJson));
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },
    async load(): Promise<tf.io.ModelArtifacts> {
      const modelJson = JSON.parse((await store.read(join(prefix, MODEL_JSON))).toString('utf8')) as ModelJson;
      const weightSpecs = modelJson.weightsManifest.flatMap((group) => group.weights);
      const paths = modelJson.weightsManifest.flatMap((group) => group.paths).map((p) => p.replace(/^\.\//, ''));
      if (paths.some((p) => p.includes('/'))) throw new Error(`${MODEL_JSON} names weights outside its folder`);
      const joined = Buffer.concat(await Promise.all(paths.map((p) => store.read(join(prefix, p)))));
      return {
        modelTopology: modelJson.modelTopology,
        format: modelJson.format,
        generatedBy: modelJson.generatedBy,
        convertedBy: modelJson.convertedBy,
        weightSpecs,
        weightData: joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength),
        userDefinedMetadata: modelJson.userDefinedMetadata,
      };
    },
  };
}

export const fileSystemHandler = (dir: string) => storeHandler(new LocalArtifactStore(dir), '');

const CONFIG_KEY = 'retrainModelConfig';

export async function saveModel(resnet: ResNet50, store: ArtifactStore, prefix: string): Promise<void> {
  // tfjs accepts only plain JSON here (no undefined members).
  resnet.model.setUserDefinedMetadata({ [CONFIG_KEY]: JSON.parse(JSON.stringify(resnet.config)) });
  await resnet.model.save(storeHandler(store, prefix));
}

/**
 * Rebuilds the model from the config stored in model.json and loads its weights by name, so the
 * result has the module tree (summary, torchvision export) and not only the tfjs graph.
 */
export async function loadModel(store: ArtifactStore, prefix: string): Promise<ResNet50> {
  const artifacts = await storeHandler(store, prefix).load();
  const config = artifacts.userDefinedMetadata?.[CONFIG_KEY] as ModelConfig | undefined;
  if (!config) throw new Error(`${join(prefix, MODEL_JSON)} has no ${CONFIG_KEY}: not a checkpoint written by this service`);
  const resnet = buildResNet50(config);
  setWeightsFrom(resnet, artifacts);
  return resnet;
}

/** Loads a saved model's weights, by name and strictly, into a model built from the same config. */
export async function loadWeightsInto(resnet: ResNet50, store: ArtifactStore, prefix: string): Promise<void> {
  setWeightsFrom(resnet, await storeHandler(store, prefix).load());
}

function setWeightsFrom(resnet: ResNet50, artifacts: tf.io.ModelArtifacts): void {
  const weights = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs!);
  try {
    resnet.model.loadWeights(weights, true);
  } finally {
    tf.dispose(Object.values(weights));
  }
}
