// Predictions for the API, on a worker thread: decoding and the forward pass never touch the API's
// event loop. Keeps the last few models loaded.
import { readFile } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { openArtifactStore } from '../../../common/open-artifact-store.js';
import { JobArtifacts } from '../../../common/job-artifacts.js';
import type { ModelMetadata } from '../../../schemas/artifacts.js';
import type { ImagePrediction } from '../../../schemas/predict.js';
import { selectBackend } from '../../../engine/backend/backend.js';
import { nhwcBatch } from '../../../engine/data/datasets.js';
import { decodeForModel, ImageDecodeError } from '../../../engine/data/preprocess.js';
import { loadModel } from '../../../engine/model/checkpoint-io.js';
import { freeze, type ResNet50 } from '../../../engine/model/resnet50.js';
import { useConvolutionPrecision } from '../../../engine/native/kernels/register.js';
import { topIndices } from '../../../engine/training/classification-report.js';
import { serveThreadRpc } from '../thread-rpc.js';
import type { PredictOutcome, PredictRequest, ThreadSettings } from '../thread-protocol.js';
import { float32ValuesOf } from '../../../engine/model/tensor-values.js';

const MODELS_KEPT = 2;
const BATCH = 16;
const settings = workerData as ThreadSettings;
const store = await openArtifactStore(settings.artifacts);
const ready = selectBackend(settings.backend, { nativeKernels: settings.nativeKernels });

interface LoadedModel {
  resnet: ResNet50;
  metadata: ModelMetadata;
}
const loaded = new Map<string, Promise<LoadedModel>>();

/** The saved model in `folder` of the job's artifacts (its final model or an epoch's checkpoint). */
function modelOf(jobId: string, folder: string): Promise<LoadedModel> {
  let entry = loaded.get(folder);
  if (!entry) {
    entry = (async () => {
      const metadata = await new JobArtifacts(store, jobId).readModelMetadata(folder);
      if (!metadata) throw new Error(`job ${jobId} has no saved model in ${folder}`);
      const resnet = await loadModel(store, folder);
      freeze(resnet);
      return { resnet, metadata };
    })();
    entry.catch(() => loaded.delete(folder));
    loaded.set(folder, entry);
    if (loaded.size > MODELS_KEPT) {
      const [oldest, evicted] = loaded.entries().next().value as [string, Promise<LoadedModel>];
      loaded.delete(oldest);
      void evicted.then(
        (m) => m.resnet.dispose(),
        () => undefined,
      );
    }
  }
  return entry;
}

serveThreadRpc<PredictRequest, PredictOutcome>(parentPort, async ({ jobId, folder, images, topK, precision }) => {
  await ready;
  const { resnet, metadata } = await modelOf(jobId, folder);
  const { preprocessing, classNames } = metadata;
  const decoded: PromiseSettledResult<Awaited<ReturnType<typeof decodeForModel>>>[] = [];
  // One file in memory at a time: a request may carry 64 files of 32 MiB.
  for (const image of images) {
    decoded.push(
      await decodeForModel(await readFile(image.path), preprocessing).then(
        (value) => ({ status: 'fulfilled' as const, value }),
        (reason: unknown) => ({ status: 'rejected' as const, reason }),
      ),
    );
  }
  const errors = decoded.flatMap((result, index) =>
    result.status === 'rejected'
      ? [
          {
            index,
            file: images[index].name,
            message: result.reason instanceof ImageDecodeError ? result.reason.message : String(result.reason),
          },
        ]
      : [],
  );
  if (errors.length) return { ok: false, errors };
  const crops = decoded.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const predictions: ImagePrediction[] = [];
  // Set for this request's forward passes, which run without a pause another request could take.
  const ran = useConvolutionPrecision(precision);
  for (let start = 0; start < crops.length; start += BATCH) {
    const slice = crops.slice(start, start + BATCH);
    const probabilities = float32ValuesOf(() => tf.softmax(resnet.network.forward(nhwcBatch(slice, preprocessing.crop), false)));
    const classes = probabilities.length / slice.length;
    slice.forEach((_, i) => {
      const row = probabilities.subarray(i * classes, (i + 1) * classes);
      const top = topIndices(row, topK).map((index) => ({ index, className: classNames[index], probability: row[index] }));
      predictions.push({ file: images[start + i].name, top });
    });
  }
  return { ok: true, predictions, precision: ran };
});
