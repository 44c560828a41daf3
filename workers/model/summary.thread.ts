// A worker thread that builds models only to describe them, so the API's event loop never runs
// ResNet-50's weight initialisation.
import { parentPort } from 'node:worker_threads';
import { serveThreadRpc } from '../../services/api/thread-rpc.js';
import { selectBackend } from '../engine/backend.js';
import { buildResNet50, type ModelConfig } from './resnet50.js';
import { MAX_SUMMARY_DEPTH, summarize, type ModelSummary } from './summary.js';

// Describing a model needs no accelerator; wasm initialises weights fastest of what is always here.
const ready = selectBackend('wasm');

serveThreadRpc<ModelConfig, ModelSummary>(parentPort!, async (config) => {
  await ready;
  const resnet = buildResNet50(config);
  try {
    return summarize(resnet, MAX_SUMMARY_DEPTH);
  } finally {
    resnet.model.dispose();
  }
});
