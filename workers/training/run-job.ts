import { isTrainingSpec } from '../../schemas/job-spec.js';
import { useConvolutionPrecision } from '../../engine/native/kernels/register.js';
import type { TrainingResult } from '../../schemas/queue.js';
import { buildModel } from './build-model.js';
import { evaluatePretrained } from './evaluate-pretrained.js';
import type { JobContext } from './job-context.js';
import { loadData } from './load-data.js';
import { ProgressReporter } from './progress-reporter.js';
import { checkInt8 } from './quantize.js';
import { saveFinalModel } from './save-model.js';
import { resolveStartPoint } from './start-point.js';
import { train } from './train.js';

/** The job, start to end: its start weights -> load data -> build model -> train (or evaluate) -> save -> result. */
export async function runJob(requested: JobContext): Promise<TrainingResult> {
  const asked = requested.spec.precision;
  const precision = useConvolutionPrecision(asked === 'auto' ? 'bf16' : asked);
  if (asked === 'auto') requested.log(`precision auto: this job runs in ${precision}`);
  else if (precision !== asked) {
    requested.log(
      `precision ${asked} needs the oneDNN kernels on a CPU with AVX512-BF16 (kernels here: ${requested.backend.kernels}); this job runs in ${precision}`,
    );
  }
  try {
    return await runWith({ ...requested, backend: { ...requested.backend, precision } });
  } finally {
    useConvolutionPrecision('fp32');
  }
}

async function runWith(ctx: JobContext): Promise<TrainingResult> {
  const { spec } = ctx;
  const reporter = new ProgressReporter(ctx, isTrainingSpec(spec) ? spec.epochs : 0);
  // First the weights: their preprocessing is the data's.
  const start = await resolveStartPoint(ctx, reporter);
  const data = await loadData(ctx, reporter, start.transform);
  const model = await buildModel(ctx, data, start, reporter);
  try {
    const { metrics, resumedFromEpoch, stoppedEarlyAfterEpoch } = isTrainingSpec(spec)
      ? await train(ctx, spec, model, data, reporter)
      : await evaluatePretrained(ctx, model, data, reporter);
    await saveFinalModel(ctx, model, metrics, reporter);
    await checkInt8(ctx, model, data, metrics, reporter, stoppedEarlyAfterEpoch !== undefined);
    return {
      epochsCompleted: metrics.epochs.length,
      resumedFromEpoch,
      validationAccuracy: metrics.evaluation?.accuracy ?? null,
      stoppedEarlyAfterEpoch: stoppedEarlyAfterEpoch ?? null,
    };
  } finally {
    model.resnet.dispose();
  }
}
