import * as tf from '@tensorflow/tfjs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
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

/**
 * Writes files into a fresh sibling folder and renames it over `dir`, so a reader (or a resumed job)
 * sees the old checkpoint or the new one, never half of one.
 */
export async function writeDirectoryAtomically(dir: string, files: Record<string, Uint8Array | string>): Promise<void> {
  const staging = `${dir}.staging-${randomUUID()}`;
  await mkdir(staging, { recursive: true });
  try {
    await Promise.all(Object.entries(files).map(([name, data]) => writeFile(path.join(staging, name), data)));
    const retired = `${dir}.retired-${randomUUID()}`;
    await rename(dir, retired).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
    await rename(staging, dir);
    await rm(retired, { recursive: true, force: true });
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/**
 * A tfjs IOHandler on the local filesystem that works on every backend (tfjs' own `file://` handler
 * exists only in tfjs-node). Layout is tfjs' layers format: model.json + one weights file.
 */
export function fileSystemHandler(dir: string): Required<Pick<tf.io.IOHandler, 'save' | 'load'>> {
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
      await writeDirectoryAtomically(dir, { [MODEL_JSON]: JSON.stringify(modelJson), [WEIGHTS_BIN]: weights });
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },
    async load(): Promise<tf.io.ModelArtifacts> {
      const modelJson = JSON.parse(await readFile(path.join(dir, MODEL_JSON), 'utf8')) as ModelJson;
      const weightSpecs = modelJson.weightsManifest.flatMap((group) => group.weights);
      const buffers = await Promise.all(
        modelJson.weightsManifest.flatMap((group) => group.paths).map((p) => readFile(path.join(dir, p))),
      );
      const joined = Buffer.concat(buffers);
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

const CONFIG_KEY = 'retrainModelConfig';

export async function saveModel(resnet: ResNet50, dir: string): Promise<void> {
  resnet.model.setUserDefinedMetadata({ [CONFIG_KEY]: resnet.config });
  await resnet.model.save(fileSystemHandler(dir));
}

/**
 * Rebuilds the model from the config stored in model.json and loads its weights by name, so the
 * result has the module tree (summary, torchvision export) and not only the tfjs graph.
 */
export async function loadModel(dir: string): Promise<ResNet50> {
  const artifacts = await fileSystemHandler(dir).load();
  const config = artifacts.userDefinedMetadata?.[CONFIG_KEY] as ModelConfig | undefined;
  if (!config) throw new Error(`${dir}/${MODEL_JSON} has no ${CONFIG_KEY}: not a checkpoint written by this service`);
  const resnet = buildResNet50(config);
  const weights = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs!);
  try {
    resnet.model.loadWeights(weights, true);
  } finally {
    tf.dispose(Object.values(weights));
  }
  return resnet;
}
