// A worker thread that builds models only to describe them, so the API's event loop never runs
// ResNet-50's weight initialisation.
import { parentPort } from 'node:worker_threads';
import { parseBackendChoice, selectBackend } from '../engine/backend.js';
import { buildResNet50, type ModelConfig } from './resnet50.js';
import { MAX_SUMMARY_DEPTH, summarize } from './summary.js';

const ready = selectBackend(parseBackendChoice(process.env.TFJS_BACKEND === 'node-gpu' ? 'auto' : process.env.TFJS_BACKEND));

parentPort!.on('message', async ({ id, config }: { id: number; config: ModelConfig }) => {
  try {
    await ready;
    const resnet = buildResNet50(config);
    const summary = summarize(resnet, MAX_SUMMARY_DEPTH);
    resnet.model.dispose();
    parentPort!.postMessage({ id, summary });
  } catch (error) {
    parentPort!.postMessage({ id, error: (error as Error).message });
  }
});
