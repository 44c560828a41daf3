import * as tf from '../../engine/tf.js';
import type { LabelledImage } from '../../common/image-folder.js';
import { INT8_MIN_AGREEMENT, type Int8Check, type Metrics } from '../../schemas/metrics.js';
import type { ResidualStream } from '../../schemas/model.js';
import { FusedBackbone, fusedLogits, RangeObserver } from '../../engine/model/fused-backbone.js';
import { registeredOneDnn, useConvolutionPrecision } from '../../engine/native/kernels/register.js';
import type { JobModel } from './build-model.js';
import type { JobContext } from './job-context.js';
import type { JobData } from './load-data.js';
import type { ProgressReporter } from './progress-reporter.js';

const BATCH = 16;

const notOffered = (reason: string, counts: Partial<Int8Check> = {}): Int8Check => ({
  offered: false,
  reason,
  calibrationImages: 0,
  residual: null,
  heldOutImages: 0,
  agreement: null,
  accuracy: null,
  fp32Accuracy: null,
  ...counts,
});

async function forEachBatch(
  data: JobData,
  images: readonly LabelledImage[],
  use: (x: tf.Tensor4D, batch: readonly LabelledImage[]) => void,
) {
  for (let start = 0; start < images.length; start += BATCH) {
    const batch = images.slice(start, start + BATCH);
    const x = await data.loader.batch(batch);
    try {
      use(x, batch);
    } finally {
      x.dispose();
    }
  }
}

const top1 = (logits: tf.Tensor): Int32Array => tf.tidy(() => tf.argMax(logits, 1).dataSync() as Int32Array);

/**
 * Quantises the final model (static, post-training): activation ranges from up to INT8_CALIBRATION_IMAGES
 * training images, then int8 against float32 on the held-out images. int8 predictions are offered (the
 * ranges kept beside the model) only where their top-1 agrees with float32's on at least 99% of them.
 * A sweep's trial that ASHA stopped is not quantised: the check would cost every pruned trial its time.
 */
export async function checkInt8(
  ctx: JobContext,
  model: JobModel,
  data: JobData,
  metrics: Metrics,
  reporter: ProgressReporter,
  stoppedBySweep: boolean,
): Promise<void> {
  metrics.int8 = stoppedBySweep
    ? notOffered("its sweep's ASHA stopped it early (only trials that run to the end are quantised)")
    : await quantized(ctx, model, data, reporter);
  const { int8 } = metrics;
  ctx.log(
    int8.offered ? `int8 predictions offered: ${percent(int8.agreement)} top-1 agreement` : `int8 predictions not offered: ${int8.reason}`,
  );
  await ctx.artifacts.writeMetrics(metrics);
}

const percent = (share: number | null) => `${((share ?? 0) * 100).toFixed(2)}%`;

async function quantized(ctx: JobContext, model: JobModel, data: JobData, reporter: ProgressReporter): Promise<Int8Check> {
  const addon = registeredOneDnn();
  if (!addon) return notOffered(`this worker runs without the oneDNN kernels (${ctx.backend.kernels})`);
  const calibration = (data.train.length ? data.train : data.validation).slice(0, ctx.config.INT8_CALIBRATION_IMAGES);
  if (!calibration.length) return notOffered('no images to calibrate on (INT8_CALIBRATION_IMAGES=0 or no data set)');
  const heldOut = data.validation.slice(0, ctx.config.INT8_CHECK_IMAGES);
  if (!heldOut.length) return notOffered('no held-out images to check int8 against float32 on');
  await reporter.phase('quantizing');
  // The reference is float32, whatever the job trained in.
  useConvolutionPrecision('fp32');
  const { resnet } = model;
  const observer = new RangeObserver(resnet);
  await forEachBatch(data, calibration, (x) => observer.observe(x));
  const ranges = observer.result();
  // The fastest first: a float32 residual stream costs time, and only some models need it.
  const fastestBackbone = FusedBackbone.build(addon, resnet, ranges, 'int8');
  const fp32: number[] = [];
  const fastestTop1: number[] = [];
  await forEachBatch(data, heldOut, (x) => {
    fp32.push(...top1(tf.tidy(() => resnet.network.forward(x, false))));
    fastestTop1.push(...top1(fusedLogits(resnet, fastestBackbone, x)));
  });
  const checkOf = (residual: ResidualStream, int8: number[]) => ({
    calibrationImages: observer.images,
    residual,
    heldOutImages: heldOut.length,
    agreement: int8.filter((label, i) => label === fp32[i]).length / heldOut.length,
    accuracy: heldOut.filter((image, i) => int8[i] === image.label).length / heldOut.length,
    fp32Accuracy: heldOut.filter((image, i) => fp32[i] === image.label).length / heldOut.length,
  });
  const withFloatStream = async () => {
    const backbone = FusedBackbone.build(addon, resnet, ranges, 'fp32');
    const int8: number[] = [];
    await forEachBatch(data, heldOut, (x) => int8.push(...top1(fusedLogits(resnet, backbone, x))));
    return checkOf('fp32', int8);
  };
  const fastest = checkOf('int8', fastestTop1);
  const chosen = fastest.agreement >= INT8_MIN_AGREEMENT ? fastest : await withFloatStream();
  if (chosen.agreement >= INT8_MIN_AGREEMENT) {
    await ctx.artifacts.writeInt8Calibration(ctx.artifacts.finalFolder, {
      calibrationImages: observer.images,
      ranges,
      residual: chosen.residual,
    });
    return { offered: true, reason: null, ...chosen };
  }
  const agreements = `${percent(fastest.agreement)} (residual stream in int8), ${percent(chosen.agreement)} (in fp32)`;
  return notOffered(
    `top-1 agreement with float32 was ${agreements} on ${heldOut.length} held-out images: under ${percent(INT8_MIN_AGREEMENT)}`,
    chosen,
  );
}
