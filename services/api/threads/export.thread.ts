// Converts saved models for download (ONNX, its int8 QDQ form, torchvision safetensors, and the tar.gz of a
// model that keeps only what trains) on a worker thread: loading ResNet-50 and folding its BatchNorms never runs on the
// API's event loop.
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import { JobArtifacts, StoredFile } from '../../../common/job-artifacts.js';
import { writeArchive } from '../../../common/model-archive.js';
import { openArtifactStore } from '../../../common/open-artifact-store.js';
import { selectBackend } from '../../../engine/backend/backend.js';
import { loadModel, saveModel } from '../../../engine/model/checkpoint-io.js';
import type { ResNet50 } from '../../../engine/model/resnet50.js';
import { exportOnnx } from '../../../engine/model/onnx-export.js';
import { FusedBackbone, type Int8Description } from '../../../engine/model/fused-backbone.js';
import { loadOneDnn } from '../../../engine/native/onednn.js';
import { torchvisionWeightChunks } from '../../../engine/model/torchvision-weights.js';
import { ExportRequest, type ModelMetadata } from '../../../schemas/artifacts.js';
import { serveThreadRpc } from '../thread-rpc.js';
import type { ThreadSettings } from '../thread-protocol.js';

const settings = workerData as ThreadSettings;
const store = await openArtifactStore(settings.artifacts);
const { version } = createRequire(import.meta.url)('../../../package.json') as { version: string };
// Only transposes and multiplies: wasm is always here and exact.
const ready = selectBackend('wasm', { nativeKernels: false });

/** The whole model in tfjs' layers format with its metadata, as a tar.gz: saved whole beside the archive, archived, removed. */
async function writeWholeArchive(artifacts: JobArtifacts, resnet: ResNet50, metadata: ModelMetadata, key: string): Promise<void> {
  const whole = `${key}.whole`;
  try {
    await saveModel(resnet, store, whole);
    await artifacts.writeModelMetadata(whole, metadata);
    await writeArchive(artifacts, whole, new StoredFile(store, key));
  } finally {
    await store.remove(whole);
  }
}

/** The int8 backbone the predictions run for a saved model, described for an export: its calibration quantised by the addon. */
async function int8Description(artifacts: JobArtifacts, folder: string, resnet: ResNet50): Promise<Int8Description> {
  const int8 = await artifacts.int8Of(folder);
  if ('reason' in int8) throw new Error(`precision int8 is not offered for this model: ${int8.reason}`);
  const loaded = loadOneDnn();
  if ('missing' in loaded) throw new Error(`an int8 export needs the oneDNN kernels addon, which is ${loaded.missing}`);
  const { ranges, residual } = int8.calibration;
  return FusedBackbone.build(loaded.addon, resnet, ranges, residual).describe();
}

serveThreadRpc<ExportRequest, void>(parentPort, async (request) => {
  const { jobId, model, format, precision, key } = ExportRequest.parse(request);
  await ready;
  const artifacts = new JobArtifacts(store, jobId);
  const metadata = await artifacts.readModelMetadata(model.folder);
  if (!metadata) throw new Error(`${model.folder} has no metadata.json`);
  const resnet = await loadModel(store, model.folder);
  try {
    if (format === 'tar.gz') await writeWholeArchive(artifacts, resnet, metadata, key);
    else if (format === 'onnx') {
      const int8 = precision === 'int8' ? await int8Description(artifacts, model.folder, resnet) : undefined;
      await store.write(key, exportOnnx(resnet, metadata, model.label, version, int8).parts);
    } else await store.write(key, torchvisionWeightChunks(resnet));
  } finally {
    resnet.dispose();
  }
});
