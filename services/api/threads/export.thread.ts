// Converts saved models for download (ONNX, torchvision safetensors) on a worker thread: loading
// ResNet-50 and folding its BatchNorms never runs on the API's event loop.
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import { JobArtifacts } from '../../../common/job-artifacts.js';
import { openArtifactStore } from '../../../common/open-artifact-store.js';
import { selectBackend } from '../../../engine/backend/backend.js';
import { loadModel } from '../../../engine/model/checkpoint-io.js';
import { exportOnnx } from '../../../engine/model/onnx-export.js';
import { torchvisionWeightChunks } from '../../../engine/model/torchvision-weights.js';
import { ExportRequest } from '../../../schemas/artifacts.js';
import { serveThreadRpc } from '../thread-rpc.js';
import type { ThreadSettings } from '../thread-protocol.js';

const settings = workerData as ThreadSettings;
const store = await openArtifactStore(settings.artifacts);
const { version } = createRequire(import.meta.url)('../../../package.json') as { version: string };
// Only transposes and multiplies: wasm is always here and exact.
const ready = selectBackend('wasm', { nativeKernels: false });

serveThreadRpc<ExportRequest, void>(parentPort, async (request) => {
  const { jobId, model, format, key } = ExportRequest.parse(request);
  await ready;
  const artifacts = new JobArtifacts(store, jobId);
  const metadata = await artifacts.readModelMetadata(model.folder);
  if (!metadata) throw new Error(`${model.folder} has no metadata.json`);
  const resnet = await loadModel(store, model.folder);
  try {
    const parts = format === 'onnx' ? exportOnnx(resnet, metadata, model.label, version).parts : torchvisionWeightChunks(resnet);
    await store.write(key, parts);
  } finally {
    resnet.dispose();
  }
});
