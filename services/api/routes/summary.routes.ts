import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Config } from '../../../schemas/config.js';
import { JobSpec } from '../../../schemas/job-spec.js';
import { SummaryDepth } from '../../../schemas/model.js';
import { resolveDatasetOrProblem } from '../../datasets/resolve.js';
import { IMAGENET_CLASSES } from '../../../workers/model/resnet50.js';
import { summaryAtDepth } from '../../../workers/model/summary.js';
import type { ModelInspector } from '../model-inspector.js';
import { parseOrThrow } from '../problem.js';
import { sendSummary } from './jobs.routes.js';

const SummaryQuery = z.strictObject({ depth: SummaryDepth });

async function classCount(spec: JobSpec, dataDir: string): Promise<number> {
  if (spec.mode === 'pretrained') return IMAGENET_CLASSES;
  if (spec.dataset.type === 'synthetic') return spec.dataset.numClasses;
  return (await resolveDatasetOrProblem(spec.dataset, dataDir)).classNames.length;
}

/** The summary of the model a spec would train, without training it. */
export function summaryRoutes(app: FastifyInstance, { inspector, config }: { inspector: ModelInspector; config: Config }): void {
  app.post('/v1/summary', async (request, reply) => {
    const { depth } = parseOrThrow(SummaryQuery, request.query, 'query');
    const spec = parseOrThrow(JobSpec, request.body, 'body');
    const summary = await inspector.summary({
      mode: spec.mode,
      numClasses: await classCount(spec, config.DATA_DIR),
      inputSize: spec.inputSize,
      fineTuning: spec.mode === 'fine_tuning' ? spec.fineTuning : undefined,
    });
    return sendSummary(request, reply, summaryAtDepth(summary, depth));
  });
}
