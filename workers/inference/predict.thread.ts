// Predictions for the API, on a worker thread: decoding and the forward pass never touch the API's
// event loop. Keeps the last few jobs' final models loaded.
import { parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { serveThreadRpc } from '../../services/api/thread-rpc.js';
import { jobKeys, LocalArtifactStore } from '../../services/artifacts/artifact-store.js';
import { decodeForModel, ImageDecodeError, type Preprocessing } from '../data/preprocess.js';
import { parseBackendChoice, selectBackend } from '../engine/backend.js';
import { loadModel } from '../model/checkpoint-io.js';
import type { ResNet50 } from '../model/resnet50.js';

export interface PredictRequest {
  artifactsDir: string;
  jobId: string;
  images: Array<{ name: string; bytes: Uint8Array }>;
  topK: number;
}

export interface ClassScore {
  index: number;
  className: string;
  probability: number;
}

export type PredictResponse =
  | { ok: true; predictions: Array<{ file: string; top: ClassScore[] }> }
  | { ok: false; errors: Array<{ index: number; file: string; message: string }> };

const MODELS_KEPT = 2;
const BATCH = 16;
const loaded = new Map<string, Promise<{ resnet: ResNet50; classNames: string[]; preprocessing: Preprocessing }>>();
const ready = selectBackend(parseBackendChoice(process.env.TFJS_BACKEND));

function modelOf(artifactsDir: string, jobId: string) {
  const key = `${artifactsDir}:${jobId}`;
  let entry = loaded.get(key);
  if (!entry) {
    entry = (async () => {
      const store = new LocalArtifactStore(artifactsDir);
      const final = jobKeys(jobId).final;
      const metadata = JSON.parse((await store.read(`${final}/metadata.json`)).toString('utf8'));
      return { resnet: await loadModel(store, final), classNames: metadata.classNames, preprocessing: metadata.preprocessing };
    })();
    entry.catch(() => loaded.delete(key));
    loaded.set(key, entry);
    if (loaded.size > MODELS_KEPT) {
      const [oldest, evicted] = loaded.entries().next().value!;
      loaded.delete(oldest);
      void evicted.then((m) => m.resnet.model.dispose(), () => undefined);
    }
  }
  return entry;
}

serveThreadRpc<PredictRequest, PredictResponse>(parentPort!, async ({ artifactsDir, jobId, images, topK }) => {
  await ready;
  const { resnet, classNames, preprocessing } = await modelOf(artifactsDir, jobId);
  const decoded = await Promise.allSettled(images.map((image) => decodeForModel(Buffer.from(image.bytes), preprocessing)));
  const errors = decoded.flatMap((result, index) =>
    result.status === 'rejected'
      ? [{ index, file: images[index].name, message: result.reason instanceof ImageDecodeError ? result.reason.message : String(result.reason) }]
      : [],
  );
  if (errors.length) return { ok: false, errors };
  const crops = decoded.map((result) => (result as PromiseFulfilledResult<Float32Array>).value);
  const size = preprocessing.crop;
  const predictions: Array<{ file: string; top: ClassScore[] }> = [];
  for (let start = 0; start < crops.length; start += BATCH) {
    const slice = crops.slice(start, start + BATCH);
    const data = new Float32Array(slice.length * size * size * 3);
    slice.forEach((crop, i) => data.set(crop, i * crop.length));
    const probabilities = tf.tidy(() => tf.softmax(resnet.model.predict(tf.tensor4d(data, [slice.length, size, size, 3])) as tf.Tensor).dataSync());
    const classes = probabilities.length / slice.length;
    slice.forEach((_, i) => {
      const row = Array.from(probabilities.subarray(i * classes, (i + 1) * classes));
      const top = row
        .map((probability, index) => ({ index, className: classNames[index], probability }))
        .sort((a, b) => b.probability - a.probability)
        .slice(0, topK);
      predictions.push({ file: images[start + i].name, top });
    });
  }
  return { ok: true, predictions };
});
