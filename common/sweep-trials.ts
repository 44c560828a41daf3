import type { EpochMetrics } from '../schemas/metrics.js';
import {
  rungsOf,
  type ObjectiveMetric,
  type RungArrival,
  type RungValue,
  type SweepObjective,
  type SweepSpec,
  type Trial,
  type TrialLink,
} from '../schemas/sweep.js';
import type { RedisClient } from './redis-connection.js';
import { redisKeys } from './redis-keys.js';

/** Every (bracket, rung) of a sweep's ASHA, each a list of arrivals in Redis. */
export function rungKeysOf(spec: Pick<SweepSpec, 'earlyStopping'>): Array<{ bracket: number; epoch: number }> {
  const asha = spec.earlyStopping;
  if (asha.type !== 'asha') return [];
  const rungs = rungsOf(asha);
  return Array.from({ length: asha.brackets }, (_, bracket) => rungs.slice(bracket).map((epoch) => ({ bracket, epoch }))).flat();
}

const METRIC_FIELDS: Record<ObjectiveMetric, keyof EpochMetrics> = {
  validation_accuracy: 'validationAccuracy',
  validation_loss: 'validationLoss',
};

export const objectiveOf = (epoch: EpochMetrics, metric: ObjectiveMetric): number | null => epoch[METRIC_FIELDS[metric]];

/** Larger is better, whatever the goal. */
export const scoreOf = (value: number, { goal }: Pick<SweepObjective, 'goal'>) => (goal === 'maximize' ? value : -value);

/** The best epoch of a trial by the objective (the first of equals), from its values per epoch. */
export function bestOf(values: readonly (number | null)[], objective: Pick<SweepObjective, 'goal'>): Trial['best'] {
  let best: Trial['best'] = null;
  values.forEach((value, i) => {
    if (value !== null && (!best || scoreOf(value, objective) > scoreOf(best.value, objective))) best = { value, epoch: i + 1 };
  });
  return best;
}

/** The value a trial enters a rung with: its objective at that epoch, or its best up to it; null before it gets there. */
export function rungValueOf(
  values: readonly (number | null)[],
  rung: number,
  judgeBy: RungValue,
  objective: Pick<SweepObjective, 'goal'>,
): number | null {
  if (values.length < rung) return null;
  return judgeBy === 'latest' ? (values[rung - 1] ?? null) : (bestOf(values.slice(0, rung), objective)?.value ?? null);
}

/**
 * ASHA's decision for the trial that arrived `place`-th (1-based) at a rung, from the trials that had
 * arrived by then: it goes on only within the top ceil(n / reductionFactor) of those n (ties go to
 * the earlier arrival), so the first to arrive always goes on.
 */
export function ashaStops(
  arrivals: readonly RungArrival[],
  place: number,
  reductionFactor: number,
  objective: Pick<SweepObjective, 'goal'>,
): boolean {
  const seen = arrivals.slice(0, place);
  const mine = scoreOf(seen[place - 1].value, objective);
  const better = seen.slice(0, place - 1).filter((other) => scoreOf(other.value, objective) >= mine).length;
  return better >= Math.ceil(seen.length / reductionFactor);
}

/** Appends the trial to the rung once: a resumed trial keeps its first place. Returns the place (1-based). */
const ARRIVE = `
local place = redis.call('HGET', KEYS[1], ARGV[1])
if place then return tonumber(place) end
place = redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], place)
return place`;

/** A trial's side of its sweep's record in Redis, as its worker writes it. */
export class TrialReport {
  private readonly keys;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
    private readonly link: TrialLink,
  ) {
    this.keys = redisKeys(prefix);
  }

  /**
   * Records the trial's objective after each epoch so far, enters it at each rung it has reached
   * (once), and answers whether ASHA stops it there.
   */
  async epochsEnded(history: readonly EpochMetrics[]): Promise<boolean> {
    const { sweep, trial, objective, rungs, bracket, reductionFactor, judgeBy } = this.link;
    const values = history.map((epoch) => objectiveOf(epoch, objective.metric));
    await this.redis.hset(this.keys.sweepEpochs(sweep), String(trial), JSON.stringify(values));
    for (const rung of rungs) {
      const value = rungValueOf(values, rung, judgeBy, objective);
      if (value === null) continue;
      const arrival: RungArrival = { trial, value };
      const rungKey = this.keys.sweepRung(sweep, rung, bracket);
      const place = Number(
        await this.redis.eval(ARRIVE, 2, this.keys.sweepArrivals(sweep), rungKey, `${trial}:${rung}`, JSON.stringify(arrival)),
      );
      const arrivals = (await this.redis.lrange(rungKey, 0, place - 1)).map((entry) => JSON.parse(entry) as RungArrival);
      if (ashaStops(arrivals, place, reductionFactor, objective)) return true;
    }
    return false;
  }
}
