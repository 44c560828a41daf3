// Predictions for the API, on a worker thread: decoding and the forward pass never touch the API's
// event loop. Keeps the last few models loaded.
import { readFile } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '../../../engine/tf.js';
import { openArtifactStore } from '../../../common/open-artifact-store.js';
import { JobArtifacts } from '../../../common/job-artifacts.js';
import type { ModelMetadata } from '../../../schemas/artifacts.js';
import type { ImagePrediction, PredictPrecision } from '../../../schemas/predict.js';
import { selectBackend } from '../../../engine/backend/backend.js';
import { nhwcBatch } from '../../../engine/data/datasets.js';
import { decodeForModel, ImageDecodeError } from '../../../engine/data/preprocess.js';
import { loadModel } from '../../../engine/model/checkpoint-io.js';
import { freeze, type ResNet50 } from '../../../engine/model/resnet50.js';
import { registeredOneDnn, useConvolutionPrecision } from '../../../engine/native/kernels/register.js';
import { FusedBackbone, frozenCodes, type FrozenCodes } from '../../../engine/model/fused-backbone.js';
import type { Precision } from '../../../schemas/model.js';
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
  /** The backbone in int8 (quantised on first use), or why the model has none. */
  int8: { backbone: () => FusedBackbone } | { reason: string };
  /** The backbone in each float precision, as this thread runs it fastest. */
  float: Record<Precision, FrozenCodes>;
}

/** What answers for int8 predictions of a saved model: its calibration, quantised here; else the job's reason. */
async function int8BackboneOf(artifacts: JobArtifacts, folder: string, resnet: ResNet50): Promise<LoadedModel['int8']> {
  const addon = registeredOneDnn();
  if (!addon) return { reason: 'this API host runs without the oneDNN kernels' };
  const int8 = await artifacts.int8Of(folder);
  if ('reason' in int8) return int8;
  const { calibration } = int8;
  let backbone: FusedBackbone | null = null;
  return { backbone: () => (backbone ??= FusedBackbone.build(addon, resnet, calibration.ranges, calibration.residual)) };
}
const loaded = new Map<string, Promise<LoadedModel>>();

/** The saved model in `folder` of the job's artifacts (its final model or an epoch's checkpoint). */
function modelOf(jobId: string, folder: string): Promise<LoadedModel> {
  let entry = loaded.get(folder);
  if (!entry) {
    entry = (async () => {
      const artifacts = new JobArtifacts(store, jobId);
      const metadata = await artifacts.readModelMetadata(folder);
      if (!metadata) throw new Error(`job ${jobId} has no saved model in ${folder}`);
      const resnet = await loadModel(store, folder);
      freeze(resnet);
      const float = { fp32: frozenCodes(resnet, 'fp32'), bf16: frozenCodes(resnet, 'bf16') };
      return { resnet, metadata, int8: await int8BackboneOf(artifacts, folder, resnet), float };
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

/** The fastest backbone offered unless asked: int8 where the model has it, else bf16 where the CPU runs it. */
function backboneFor(
  model: LoadedModel,
  precision: PredictPrecision | undefined,
): { ran: PredictPrecision; backbone: Pick<FrozenCodes, 'codes'> } {
  if ((precision ?? 'int8') === 'int8' && 'backbone' in model.int8) return { ran: 'int8', backbone: model.int8.backbone() };
  // Set for this request's forward passes (eager ones where the oneDNN kernels do not run), which run without a pause another request could take.
  const ran = useConvolutionPrecision(precision === 'fp32' ? 'fp32' : 'bf16');
  return { ran, backbone: model.float[ran] };
}

serveThreadRpc<PredictRequest, PredictOutcome>(parentPort, async ({ jobId, folder, images, topK, precision }) => {
  await ready;
  const model = await modelOf(jobId, folder);
  const { resnet, metadata, int8 } = model;
  if (precision === 'int8' && 'reason' in int8)
    return { ok: false, unavailable: `precision int8 is not offered for this model: ${int8.reason}` };
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
  const { ran, backbone } = backboneFor(model, precision);
  const logits = (x: tf.Tensor4D) => tf.tidy(() => resnet.classify(backbone.codes(x)));
  for (let start = 0; start < crops.length; start += BATCH) {
    const slice = crops.slice(start, start + BATCH);
    const probabilities = float32ValuesOf(() => tf.softmax(logits(nhwcBatch(slice, preprocessing.crop))));
    const classes = probabilities.length / slice.length;
    slice.forEach((_, i) => {
      const row = probabilities.subarray(i * classes, (i + 1) * classes);
      const top = topIndices(row, topK).map((index) => ({ index, className: classNames[index], probability: row[index] }));
      predictions.push({ file: images[start + i].name, top });
    });
  }
  return { ok: true, predictions, precision: ran };
});
