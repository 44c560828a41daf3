import { z } from 'zod';
import { Owner } from './auth.js';
import { JobState } from './job-status.js';
import { AliasName } from './model-alias.js';
import { RunName, RunTags } from './run-labels.js';

/** A value a grid or a list of choices may give a field: what JSON can carry. */
const ChoiceValue = z.union([z.number(), z.string(), z.boolean(), z.null(), z.array(z.unknown()), z.record(z.string(), z.unknown())]);

export const SweepParameter = z.union([
  z.strictObject({ values: z.array(ChoiceValue).min(1).max(100).describe('The choices, tried as given (grid) or drawn evenly') }),
  z
    .strictObject({
      distribution: z
        .enum(['uniform', 'log_uniform', 'int_uniform'])
        .describe('log_uniform: uniform in log space (learning rates); int_uniform: integers, both bounds included'),
      min: z.number(),
      max: z.number(),
    })
    .refine((range) => range.min <= range.max, { path: ['min'], message: 'min is greater than max' })
    .refine((range) => range.distribution !== 'log_uniform' || range.min > 0, { path: ['min'], message: 'log_uniform needs min > 0' })
    .refine((range) => range.distribution !== 'int_uniform' || (Number.isInteger(range.min) && Number.isInteger(range.max)), {
      path: ['min'],
      message: 'int_uniform needs integer bounds',
    }),
]);
export type SweepParameter = z.infer<typeof SweepParameter>;

/** What a random and a TPE search share: how many trials, and the seed their draws follow. */
const drawn = {
  trials: z.number().int().min(1).max(1000),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .default(0),
};

export const SweepSearch = z.discriminatedUnion('method', [
  z.strictObject({ method: z.literal('grid').describe("Every combination of the parameters' values, in order") }),
  z.strictObject({ method: z.literal('random'), ...drawn }),
  z.strictObject({
    method: z
      .literal('tpe')
      .describe(
        'Tree-structured Parzen estimator: after `startupTrials` random ones, draws where the best quarter of the finished trials lie',
      ),
    ...drawn,
    startupTrials: z.number().int().min(1).max(100).default(4),
  }),
]);
export type SweepSearch = z.infer<typeof SweepSearch>;

export const ObjectiveMetric = z.enum(['validation_accuracy', 'validation_loss']);
export type ObjectiveMetric = z.infer<typeof ObjectiveMetric>;

export const SweepObjective = z
  .strictObject({
    metric: ObjectiveMetric.default('validation_accuracy'),
    goal: z.enum(['maximize', 'minimize']).default('maximize'),
  })
  .refine((objective) => (objective.metric === 'validation_loss') === (objective.goal === 'minimize'), {
    path: ['goal'],
    message: 'validation_accuracy is maximized and validation_loss minimized (each trial keeps its best epoch by it)',
  });
export type SweepObjective = z.infer<typeof SweepObjective>;

type RungSchedule = { minEpochs: number; reductionFactor: number; maxEpochs: number };

/** ASHA's rungs: minEpochs x reductionFactor^k, below maxEpochs (the last epoch needs no decision). */
export function rungsOf(asha: RungSchedule): number[] {
  const rungs: number[] = [];
  for (let epoch = asha.minEpochs; epoch < asha.maxEpochs; epoch *= asha.reductionFactor) rungs.push(epoch);
  return rungs;
}

export const RungValue = z
  .enum(['best', 'latest'])
  .describe(
    "What a trial is judged by at a rung: best, its best objective up to that epoch (what it keeps: the sweep promotes a trial's best checkpoint), so one noisy epoch does not stop it; latest, the rung epoch's own objective (Ray Tune's and Determined's ASHA)",
  );
export type RungValue = z.infer<typeof RungValue>;

export const Asha = z
  .strictObject({
    type: z.literal('asha'),
    minEpochs: z.number().int().min(1).max(1000).describe('The first rung'),
    reductionFactor: z
      .number()
      .int()
      .min(2)
      .max(10)
      .default(3)
      .describe('Rungs at minEpochs x reductionFactor^k; the top 1/reductionFactor go on'),
    maxEpochs: z.number().int().min(1).max(1000).describe("Every trial's epochs (replaces the base spec's)"),
    brackets: z
      .number()
      .int()
      .min(1)
      .max(10)
      .default(1)
      .describe(
        "Hyperband's brackets side by side (Ray Tune's ASHA brackets): trial i is in bracket i mod brackets, bracket b skips the first b rungs, and trials are compared only within their bracket, so a slow starter is not judged only at the first rung",
      ),
    judgeBy: RungValue.default('best'),
  })
  .refine((asha) => asha.minEpochs < asha.maxEpochs, { path: ['minEpochs'], message: 'minEpochs must be below maxEpochs' })
  .refine((asha) => asha.brackets <= rungsOf(asha).length + 1, {
    path: ['brackets'],
    message: 'at most one bracket per rung plus one without rungs',
  });
export type Asha = z.infer<typeof Asha>;

/** A trial's bracket and the rungs it is judged at: bracket b skips the first b rungs. */
export function bracketOf(asha: RungSchedule & { brackets: number }, trial: number) {
  const bracket = trial % asha.brackets;
  return { bracket, rungs: rungsOf(asha).slice(bracket) };
}

export const SweepEarlyStopping = z.union([z.strictObject({ type: z.literal('none') }), Asha]);

export const SweepSpec = z.strictObject({
  name: RunName.optional(),
  tags: RunTags.describe('GET /v1/sweeps?tag= lists the sweeps with a tag'),
  base: z.record(z.string(), z.unknown()).describe('A job spec of a training mode (POST /v1/jobs), the parameters set on it per trial'),
  parameters: z
    .record(z.string().regex(/^[A-Za-z]\w*(\.[A-Za-z]\w*)*$/, 'a dotted path into the job spec'), SweepParameter)
    .refine((parameters) => Object.keys(parameters).length > 0, 'at least one parameter')
    .refine((parameters) => Object.keys(parameters).length <= 20, 'at most 20 parameters')
    .describe('By dotted path into the job spec (optimizer.learningRate, fineTuning.trainableFrom, ...)'),
  search: SweepSearch,
  objective: SweepObjective.default({ metric: 'validation_accuracy', goal: 'maximize' }),
  earlyStopping: SweepEarlyStopping.default({ type: 'none' }),
  parallelism: z
    .number()
    .int()
    .min(1)
    .max(100)
    .default(2)
    .describe("Trials queued or running at once (at most the owner's quota of open jobs)"),
  promote: AliasName.optional().describe("When the sweep completes, point this model alias at the best trial's best epoch"),
});
export type SweepSpec = z.infer<typeof SweepSpec>;

/** What a trial's job carries of its sweep: the worker reports each epoch's objective and asks ASHA at each rung. */
export const TrialLink = z.object({
  sweep: z.uuid(),
  trial: z.number().int().min(0),
  objective: SweepObjective,
  rungs: z.array(z.number().int()).describe("Epochs at which ASHA decides (its bracket's); empty without early stopping"),
  bracket: z.number().int().min(0).default(0),
  reductionFactor: z.number().int(),
  // Links queued before judgeBy existed were judged by the latest epoch.
  judgeBy: RungValue.default('latest'),
});
export type TrialLink = z.infer<typeof TrialLink>;

export const RungArrival = z.object({ trial: z.number().int(), value: z.number().describe('The objective at the rung') });
export type RungArrival = z.infer<typeof RungArrival>;

export const TrialState = z.union([JobState, z.literal('pending').describe("Decided, its job not yet queued (the owner's quota)")]);

export const Trial = z.object({
  index: z.number().int(),
  job: z.uuid(),
  state: TrialState,
  parameters: z.record(z.string(), z.unknown()),
  epochs: z.array(z.number().nullable()).describe('The objective after each epoch trained'),
  best: z.object({ value: z.number(), epoch: z.number().int() }).nullable(),
  rungs: z.array(
    z.object({
      bracket: z.number().int(),
      epoch: z.number().int(),
      value: z.number(),
      arrival: z.number().int().describe('1 for the first trial to reach the rung'),
      decision: z.enum(['continue', 'stop']),
    }),
  ),
});
export type Trial = z.infer<typeof Trial>;

export const SweepState = z.enum(['running', 'completed', 'cancelled']);
export type SweepState = z.infer<typeof SweepState>;

export const SweepBest = z.object({
  trial: z.number().int(),
  job: z.uuid(),
  value: z.number(),
  epoch: z.number().int().describe('The epoch of the best checkpoint (GET /v1/jobs/{job}/checkpoint?epoch=best)'),
});

export const SweepStatus = z.object({
  id: z.uuid(),
  owner: Owner,
  name: z.string().nullable(),
  tags: z.array(z.string()),
  state: SweepState,
  spec: SweepSpec,
  totalTrials: z.number().int(),
  trials: z.array(Trial),
  rungs: z.array(
    z.object({
      bracket: z.number().int(),
      epoch: z.number().int(),
      arrivals: z.array(RungArrival).describe('In the order trials reached it'),
    }),
  ),
  best: SweepBest.nullable().describe('The best trial so far; once completed, the promoted one'),
  createdAt: z.string(),
  finishedAt: z.string().nullable(),
  links: z.record(z.string(), z.string()),
});
export type SweepStatus = z.infer<typeof SweepStatus>;

export const SweepList = z.object({
  items: z.array(SweepStatus.omit({ trials: true, rungs: true })),
  total: z.number().int(),
  limit: z.number().int(),
  offset: z.number().int(),
});
export type SweepList = z.infer<typeof SweepList>;
