import type { z } from 'zod';
import { fieldErrorsOf, InvalidInputError, type FieldError } from '../../common/errors.js';
import { JobSpec, type TrainingJobSpec } from '../../schemas/job-spec.js';
import type { SweepSpec } from '../../schemas/sweep.js';
import { trialCount, withParameters } from './search.js';

export interface SweepLimits {
  /** Trials one sweep may run (SWEEP_MAX_TRIALS). */
  maxTrials: number;
  /** The quota of open jobs (QUOTA_OPEN_JOBS), which bounds the trials in flight. */
  quotaOpenJobs: number;
}

export interface CheckedSweep {
  /** The base as the job spec reads it, with ASHA's epochs. */
  base: TrainingJobSpec;
  totalTrials: number;
}

const prefixed = (prefix: string, error: z.ZodError): FieldError[] =>
  fieldErrorsOf(error).map((field) => ({ ...field, path: field.path ? `${prefix}.${field.path}` : prefix }));

/** Whether a dotted path names a field the parsed spec has (an absent optional block has none of its fields). */
function hasPath(spec: Record<string, unknown>, path: string): boolean {
  let node: unknown = spec;
  for (const segment of path.split('.')) {
    if (!node || typeof node !== 'object' || Array.isArray(node) || !(segment in node)) return false;
    node = (node as Record<string, unknown>)[segment];
  }
  return true;
}

/** The values a parameter may take at its extremes: every listed value, or a range's bounds. */
const probesOf = (parameter: SweepSpec['parameters'][string]): Array<{ field: string; value: unknown }> =>
  'values' in parameter
    ? parameter.values.map((value, i) => ({ field: `values.${i}`, value }))
    : [
        { field: 'min', value: parameter.min },
        { field: 'max', value: parameter.max },
      ];

function checkParameter(spec: SweepSpec, base: TrainingJobSpec, path: string): FieldError[] {
  const at = `parameters.${path}`;
  const parameter = spec.parameters[path];
  if (path === 'mode') return [{ path: at, message: "a sweep keeps its base spec's mode; sweep one mode at a time" }];
  if (!hasPath(base, path)) return [{ path: at, message: `a ${base.mode} job spec has no field ${path} (set its block in base first)` }];
  if (path === 'epochs' && spec.earlyStopping.type === 'asha')
    return [{ path: at, message: "with ASHA every trial's epochs are earlyStopping.maxEpochs" }];
  if (spec.search.method === 'grid' && !('values' in parameter))
    return [{ path: at, message: 'a grid search needs values, not a distribution' }];
  const errors: FieldError[] = [];
  for (const { field, value } of probesOf(parameter)) {
    const parsed = JobSpec.safeParse(withParameters(base, { [path]: value }));
    if (!parsed.success)
      errors.push(
        ...fieldErrorsOf(parsed.error).map((e) => ({
          path: `${at}.${field}`,
          message: `the job spec refuses it: ${e.path}: ${e.message}`,
        })),
      );
  }
  return errors;
}

/**
 * A sweep the service can run: its base a valid training spec with a validation split (the objective
 * is a validation metric), each parameter a field of that spec whose values the spec accepts, and its
 * trials and parallelism within the limits. Every problem is a 400 naming its path.
 */
export function checkSweep(spec: SweepSpec, limits: SweepLimits): CheckedSweep {
  const asha = spec.earlyStopping.type === 'asha' ? spec.earlyStopping : null;
  const parsed = JobSpec.safeParse(asha ? { ...spec.base, epochs: asha.maxEpochs } : spec.base);
  if (!parsed.success) throw new InvalidInputError(prefixed('base', parsed.error));
  const base = parsed.data;
  if (base.mode === 'pretrained') throw InvalidInputError.field('base.mode', 'a sweep trains: feature_extraction or fine_tuning');
  if (base.validationSplit === 0)
    throw InvalidInputError.field('base.validationSplit', 'the objective is a validation metric: hold out some images (above 0)');
  const errors = Object.keys(spec.parameters).flatMap((path) => checkParameter(spec, base, path));
  if (errors.length) throw new InvalidInputError(errors);
  const totalTrials = trialCount(spec);
  if (totalTrials > limits.maxTrials)
    throw InvalidInputError.field(
      spec.search.method === 'grid' ? 'parameters' : 'search.trials',
      `${totalTrials} trials; a sweep may run at most ${limits.maxTrials} (SWEEP_MAX_TRIALS)`,
    );
  if (spec.parallelism > limits.quotaOpenJobs)
    throw InvalidInputError.field('parallelism', `at most the quota of open jobs, ${limits.quotaOpenJobs} (QUOTA_OPEN_JOBS)`);
  return { base, totalTrials };
}
