import { mixSeed, seededRandom } from '../../common/random.js';
import type { SweepParameter, SweepSpec } from '../../schemas/sweep.js';

export type Parameters = Record<string, unknown>;
/** A finished trial as the model-based search reads it: what it tried, and how well it did (larger is better). */
export interface Observation {
  parameters: Parameters;
  score: number;
}

type Range = Extract<SweepParameter, { distribution: string }>;
const isRange = (parameter: SweepParameter): parameter is Range => 'distribution' in parameter;

/** How many trials the sweep runs: every combination for a grid. */
export function trialCount({ search, parameters }: Pick<SweepSpec, 'search' | 'parameters'>): number {
  if (search.method !== 'grid') return search.trials;
  return Object.values(parameters).reduce((product, parameter) => product * (isRange(parameter) ? 1 : parameter.values.length), 1);
}

/** The grid's `index`-th combination, the last parameter changing fastest (as itertools.product). */
function gridPoint(parameters: SweepSpec['parameters'], index: number): Parameters {
  const point: Parameters = {};
  let rest = index;
  for (const [path, parameter] of Object.entries(parameters).reverse()) {
    if (isRange(parameter)) throw new Error(`grid search needs values for ${path}`);
    point[path] = parameter.values[rest % parameter.values.length];
    rest = Math.floor(rest / parameter.values.length);
  }
  return Object.fromEntries(Object.keys(parameters).map((path) => [path, point[path]]));
}

/** Where a range is searched: log space for log_uniform. */
const toSearchSpace = (range: Range, x: number) => (range.distribution === 'log_uniform' ? Math.log(x) : x);
const fromSearchSpace = (range: Range, t: number) => {
  const x = range.distribution === 'log_uniform' ? Math.exp(t) : t;
  const bounded = Math.min(range.max, Math.max(range.min, x));
  return range.distribution === 'int_uniform' ? Math.round(bounded) : bounded;
};
const boundsOf = (range: Range): [number, number] => {
  const widen = range.distribution === 'int_uniform' ? 0.5 : 0;
  return [toSearchSpace(range, range.min) - widen, toSearchSpace(range, range.max) + widen];
};

function draw(parameter: SweepParameter, random: () => number): unknown {
  if (!isRange(parameter)) return parameter.values[Math.floor(random() * parameter.values.length)];
  const [low, high] = boundsOf(parameter);
  return fromSearchSpace(parameter, low + random() * (high - low));
}

/** A trial's own draw: a function of (seed, index) alone, so a resumed sweep draws the same. */
const randomPoint = (spec: SweepSpec, seed: number, index: number): Parameters => {
  const random = seededRandom(mixSeed(seed, index));
  return Object.fromEntries(Object.entries(spec.parameters).map(([path, parameter]) => [path, draw(parameter, random)]));
};

const CANDIDATES = 24;
/** The share of finished trials that count as good. */
const GAMMA = 0.25;

/** A Parzen estimator over a range: the uniform prior and a Gaussian at each observation, in search space. */
function rangeDensity(range: Range, points: number[]) {
  const [low, high] = boundsOf(range);
  const width = high - low || 1;
  // Silverman's rule, never under a twentieth of the range (a few equal points must not collapse it).
  const mean = points.reduce((sum, t) => sum + t, 0) / Math.max(1, points.length);
  const spread = Math.sqrt(points.reduce((sum, t) => sum + (t - mean) ** 2, 0) / Math.max(1, points.length - 1));
  const sigma = points.length < 2 ? width / 2 : Math.max(width / 20, 1.06 * spread * points.length ** -0.2);
  const density = (t: number) =>
    (1 / width + points.reduce((sum, mu) => sum + Math.exp(-0.5 * ((t - mu) / sigma) ** 2) / (sigma * Math.sqrt(2 * Math.PI)), 0)) /
    (points.length + 1);
  const sample = (random: () => number) => {
    const component = Math.floor(random() * (points.length + 1));
    if (component === points.length) return low + random() * width;
    // Box-Muller
    const normal = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    return Math.min(high, Math.max(low, points[component] + sigma * normal));
  };
  return { density, sample };
}

/** Smoothed frequencies over a list of choices. */
function choiceDensity(values: readonly unknown[], chosen: unknown[]) {
  const keys = values.map((value) => JSON.stringify(value));
  const counts = keys.map((key) => chosen.filter((value) => JSON.stringify(value) === key).length + 1);
  const total = counts.reduce((sum, n) => sum + n, 0);
  return {
    density: (value: unknown) => counts[keys.indexOf(JSON.stringify(value))] / total,
    sample: (random: () => number) => {
      let pick = random() * total;
      for (let i = 0; i < values.length; i++) if ((pick -= counts[i]) < 0) return values[i];
      return values[values.length - 1];
    },
  };
}

interface Density<T> {
  density(value: T): number;
  sample(random: () => number): T;
}

/** Of a few candidates drawn from the good trials' density, the one with the largest ratio good/rest. */
function likeliestGood<T>(good: Density<T>, rest: Density<T>, random: () => number): T {
  const ratio = (value: T) => good.density(value) / rest.density(value);
  const candidates = Array.from({ length: CANDIDATES }, () => good.sample(random));
  return candidates.reduce((best, value) => (ratio(value) > ratio(best) ? value : best));
}

/**
 * Tree-structured Parzen estimation, each parameter on its own (as hyperopt's default): split the
 * finished trials into the best quarter and the rest, model each part's density, and draw the
 * candidate with the largest ratio good/rest among a few drawn from the good density.
 */
function tpePoint(spec: SweepSpec, seed: number, index: number, history: readonly Observation[]): Parameters {
  const random = seededRandom(mixSeed(seed ^ 0x5bd1e995, index));
  const ranked = [...history].sort((a, b) => b.score - a.score);
  const goodCount = Math.max(1, Math.ceil(GAMMA * ranked.length));
  const [good, rest] = [ranked.slice(0, goodCount), ranked.slice(goodCount)];
  const point: Parameters = {};
  for (const [path, parameter] of Object.entries(spec.parameters)) {
    const valuesOf = (trials: Observation[]) => trials.map((trial) => trial.parameters[path]);
    if (isRange(parameter)) {
      const space = (trials: Observation[]) => valuesOf(trials).map((value) => toSearchSpace(parameter, Number(value)));
      const best = likeliestGood(rangeDensity(parameter, space(good)), rangeDensity(parameter, space(rest)), random);
      point[path] = fromSearchSpace(parameter, best);
    } else {
      point[path] = likeliestGood(choiceDensity(parameter.values, valuesOf(good)), choiceDensity(parameter.values, valuesOf(rest)), random);
    }
  }
  return point;
}

/**
 * The parameters of trial `index`: the grid's combination, a seeded draw, or TPE's choice from the
 * trials finished so far (random for the first `startupTrials`).
 */
export function suggest(spec: SweepSpec, index: number, history: readonly Observation[]): Parameters {
  const { search } = spec;
  if (search.method === 'grid') return gridPoint(spec.parameters, index);
  if (search.method === 'random' || history.length < search.startupTrials) return randomPoint(spec, search.seed, index);
  return tpePoint(spec, search.seed, index, history);
}

/** The base spec with each dotted path set (a copy). */
export function withParameters(base: Record<string, unknown>, parameters: Parameters): Record<string, unknown> {
  const spec = structuredClone(base);
  for (const [path, value] of Object.entries(parameters)) {
    const segments = path.split('.');
    let node = spec;
    for (const segment of segments.slice(0, -1)) node = node[segment] as Record<string, unknown>;
    node[segments[segments.length - 1]] = value;
  }
  return spec;
}
