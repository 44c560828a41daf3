// A worker thread that builds models only to describe them, so the API's event loop never allocates
// ResNet-50's weights (left at zero: a summary never reads them).
import { parentPort } from 'node:worker_threads';
import { MAX_SUMMARY_DEPTH, type ModelConfig, type ModelSummary } from '../../../schemas/model.js';
import { selectBackend } from '../../../engine/backend/backend.js';
import { buildResNet50 } from '../../../engine/model/resnet50.js';
import { summarize } from '../../../engine/model/summary.js';
import { serveThreadRpc } from '../thread-rpc.js';

// Describing a model needs no accelerator (and no convolution): wasm allocates weights fastest of what is always here.
const ready = selectBackend('wasm', { nativeKernels: false });

serveThreadRpc<ModelConfig, ModelSummary>(parentPort, async (config) => {
  await ready;
  const resnet = buildResNet50(config, { randomBackbone: false });
  try {
    return summarize(resnet, MAX_SUMMARY_DEPTH);
  } finally {
    resnet.dispose();
  }
});
