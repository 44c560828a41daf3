import { parseArgs } from 'node:util';
import { z } from 'zod';
import { renderSummaryText } from '../common/summary-table.js';
import { loadConfig } from '../schemas/config.js';
import { FineTuningOptions, IMAGENET_CLASSES, InputSize, NumClasses, SummaryDepth, TransferMode } from '../schemas/model.js';
import { selectBackend } from '../engine/backend/backend.js';
import { buildResNet50 } from '../engine/model/resnet50.js';
import { summarize } from '../engine/model/summary.js';
import { UsageError } from './usage.js';

export const SUMMARY_USAGE = `retrain summary --mode <pretrained|feature_extraction|fine_tuning> [--num-classes N]
                [--input-size 224] [--depth 0..3] [--trainable-from conv1|layer1..layer4]
                [--no-freeze-batch-norm] [--json]`;

const SummaryArgs = z.object({
  mode: TransferMode,
  numClasses: z.coerce.number().pipe(NumClasses).optional(),
  inputSize: z.coerce.number().pipe(InputSize).default(224),
  depth: SummaryDepth,
  trainableFrom: FineTuningOptions.shape.trainableFrom,
  freezeBatchNorm: z.boolean(),
  json: z.boolean(),
});

export async function summary(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      mode: { type: 'string' },
      'num-classes': { type: 'string' },
      'input-size': { type: 'string' },
      depth: { type: 'string' },
      'trainable-from': { type: 'string' },
      'no-freeze-batch-norm': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const parsed = SummaryArgs.safeParse({
    mode: values.mode,
    numClasses: values['num-classes'],
    inputSize: values['input-size'],
    depth: values.depth,
    trainableFrom: values['trainable-from'],
    freezeBatchNorm: !values['no-freeze-batch-norm'],
    json: values.json,
  });
  if (!parsed.success) throw new UsageError(z.prettifyError(parsed.error));
  const args = parsed.data;
  if (args.mode === 'pretrained' && args.numClasses !== undefined && args.numClasses !== IMAGENET_CLASSES) {
    throw new UsageError(`--num-classes: pretrained keeps ImageNet's ${IMAGENET_CLASSES} classes`);
  }
  if (args.mode !== 'pretrained' && args.numClasses === undefined) throw new UsageError(`--num-classes is required for ${args.mode}`);
  if (args.mode !== 'fine_tuning' && (values['trainable-from'] || values['no-freeze-batch-norm'])) {
    throw new UsageError('--trainable-from and --no-freeze-batch-norm apply to fine_tuning only');
  }
  const config = loadConfig();
  await selectBackend(config.TFJS_BACKEND, { nativeKernels: config.RETRAIN_NATIVE_KERNELS });
  const resnet = buildResNet50(
    {
      mode: args.mode,
      numClasses: args.numClasses ?? IMAGENET_CLASSES,
      inputSize: args.inputSize,
      fineTuning: args.mode === 'fine_tuning' ? { trainableFrom: args.trainableFrom, freezeBatchNorm: args.freezeBatchNorm } : undefined,
    },
    { randomBackbone: false },
  );
  const result = summarize(resnet, args.depth);
  process.stdout.write(args.json ? `${JSON.stringify(result, null, 2)}\n` : renderSummaryText(result));
}
