import * as tf from '@tensorflow/tfjs';
import { readJson, type ArtifactStore } from '../../common/artifact-store.js';
import { TfjsModelJson } from '../../schemas/artifacts.js';
import { ModelConfig } from '../../schemas/model.js';
import './batch-norm.js';
import { buildResNet50, type ResNet50 } from './resnet50.js';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';

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
      const modelJson: TfjsModelJson = {
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        modelTopology: artifacts.modelTopology as TfjsModelJson['modelTopology'],
        weightsManifest: [{ paths: [`./${WEIGHTS_BIN}`], weights: artifacts.weightSpecs ?? [] }],
        userDefinedMetadata: artifacts.userDefinedMetadata,
      };
      await store.write(join(prefix, WEIGHTS_BIN), weights);
      await store.write(join(prefix, MODEL_JSON), JSON.stringify(modelJson));
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },
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

export async function saveModel(resnet: ResNet50, store: ArtifactStore, prefix: string): Promise<void> {
  // tfjs accepts only plain JSON here (no undefined members).
  resnet.model.setUserDefinedMetadata({ [CONFIG_KEY]: JSON.parse(JSON.stringify(resnet.config)) as object });
  await resnet.model.save(storeHandler(store, prefix));
}

/**
 * Rebuilds the model from the config stored in model.json and loads its weights by name, so the
 * result has the module tree (summary, torchvision export) and not only the tfjs graph.
 */
export async function loadModel(store: ArtifactStore, prefix: string): Promise<ResNet50> {
  const artifacts = await storeHandler(store, prefix).load();
  const config = ModelConfig.safeParse(artifacts.userDefinedMetadata?.[CONFIG_KEY]);
  if (!config.success) throw new Error(`${join(prefix, MODEL_JSON)} has no valid ${CONFIG_KEY}: not a checkpoint written by this service`);
  const resnet = buildResNet50(config.data);
  setWeightsFrom(resnet, artifacts);
  return resnet;
}

/** Loads a saved model's weights, by name and strictly, into a model built from the same config. */
export async function loadWeightsInto(resnet: ResNet50, store: ArtifactStore, prefix: string): Promise<void> {
  setWeightsFrom(resnet, await storeHandler(store, prefix).load());
}

function setWeightsFrom(resnet: ResNet50, artifacts: tf.io.ModelArtifacts): void {
  if (!artifacts.weightData || !artifacts.weightSpecs) throw new Error('the saved model has no weights');
  const weights = tf.io.decodeWeights(artifacts.weightData, artifacts.weightSpecs);
  try {
    resnet.model.loadWeights(weights, true);
  } finally {
    tf.dispose(Object.values(weights));
  }
}
