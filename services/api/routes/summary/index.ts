import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { ArtifactStore } from '../../../../common/artifact-store.js';
import type { Caller } from '../../../../schemas/auth.js';
import { modelConfigOf } from '../../../../common/model-config.js';
import { isTrainingSpec, JobSpec } from '../../../../schemas/job-spec.js';
import { IMAGENET_CLASSES } from '../../../../schemas/model.js';
import { checkDataset } from '../../../datasets/check-dataset.js';
import type { ModelInspector } from '../../model-inspector.js';
import { sendSummary, SummaryQuery } from './reply.js';

/** The summary of the model a spec would train, without training it. */
const summaryRoutes: FastifyPluginAsyncZod<{ inspector: ModelInspector; dataDir: string; store: ArtifactStore }> = async (
  app,
  { inspector, dataDir, store },
) => {
  const classCount = async (spec: JobSpec, caller: Caller) => {
    if (!isTrainingSpec(spec)) return IMAGENET_CLASSES;
    if (spec.dataset.type === 'synthetic') return spec.dataset.numClasses;
    return (await checkDataset(spec.dataset, { dataDir, store }, caller)).classNames.length;
  };

  app.post('/summary', { schema: { body: JobSpec, querystring: SummaryQuery } }, async (request, reply) => {
    const spec = request.body;
    // The seed only changes initial values: leave it out, so one config serves every seed.
    const config = { ...modelConfigOf(spec, await classCount(spec, request.caller)), seed: undefined };
    return sendSummary(request, reply, await inspector.summary(config, request.caller), request.query.depth);
  });
};
export default summaryRoutes;
