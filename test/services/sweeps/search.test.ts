import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ashaStops, rungKeysOf, rungValueOf } from '../../../common/sweep-trials.js';
import { InvalidInputError } from '../../../common/errors.js';
import { bracketOf, rungsOf, SweepSpec } from '../../../schemas/sweep.js';
import { suggest, trialCount, withParameters, type Observation } from '../../../services/sweeps/search.js';
import { checkSweep } from '../../../services/sweeps/sweep-spec.js';

const base = {
  mode: 'fine_tuning',
  inputSize: 32,
  dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 8, imageSize: 32 },
};
const sweep = (overrides: object) => SweepSpec.parse({ base, parameters: {}, search: { method: 'grid' }, ...overrides });
const limits = { maxTrials: 10, quotaOpenJobs: 4 };

/** The paths of every field a 400 names. */
function refusedPaths(spec: object): string[] {
  try {
    checkSweep(sweep(spec), limits);
  } catch (error) {
    assert.ok(error instanceof InvalidInputError, String(error));
    return error.errors.map((e) => e.path);
  }
  assert.fail('the sweep was accepted');
}

describe('sweep search', () => {
  it('walks the grid as itertools.product, the last parameter fastest', () => {
    const spec = sweep({
      parameters: { 'optimizer.learningRate': { values: [0.1, 0.01] }, 'fineTuning.trainableFrom': { values: ['layer3', 'layer4', 'fc'] } },
    });
    assert.equal(trialCount(spec), 6);
    const points = Array.from({ length: 6 }, (_, i) => suggest(spec, i, []));
    assert.deepEqual(
      points.map((p) => [p['optimizer.learningRate'], p['fineTuning.trainableFrom']]),
      [
        [0.1, 'layer3'],
        [0.1, 'layer4'],
        [0.1, 'fc'],
        [0.01, 'layer3'],
        [0.01, 'layer4'],
        [0.01, 'fc'],
      ],
    );
  });

  it('draws random trials from (seed, index) alone, within their bounds and scales', () => {
    const parameters = {
      'optimizer.learningRate': { distribution: 'log_uniform', min: 1e-5, max: 1 },
      batchSize: { distribution: 'int_uniform', min: 2, max: 5 },
      labelSmoothing: { distribution: 'uniform', min: 0, max: 0.3 },
    };
    const spec = sweep({ parameters, search: { method: 'random', trials: 400, seed: 9 } });
    const draws = Array.from({ length: 400 }, (_, i) => suggest(spec, i, []));
    assert.deepEqual(
      Array.from({ length: 400 }, (_, i) => suggest(spec, i, [])),
      draws,
      'the same seed gives the same trials',
    );
    const other = sweep({ parameters, search: { method: 'random', trials: 400, seed: 10 } });
    assert.notDeepEqual(suggest(other, 0, []), draws[0], 'another seed, other trials');
    const rates = draws.map((d) => d['optimizer.learningRate'] as number);
    assert.ok(rates.every((r) => r >= 1e-5 && r <= 1));
    // log-uniform: a fifth of the draws in each decade, so about 20% below 1e-4 (a uniform draw: 0.01%).
    const lowDecade = rates.filter((r) => r < 1e-4).length / rates.length;
    assert.ok(lowDecade > 0.12 && lowDecade < 0.28, `share in the lowest decade: ${lowDecade}`);
    const sizes = new Set(draws.map((d) => d.batchSize));
    assert.deepEqual([...sizes].sort(), [2, 3, 4, 5], 'int_uniform includes both bounds');
    assert.ok(draws.every((d) => (d.labelSmoothing as number) >= 0 && (d.labelSmoothing as number) <= 0.3));
  });

  it('TPE draws near the best trials once it has seen enough, reproducibly', () => {
    const spec = sweep({
      parameters: { labelSmoothing: { distribution: 'uniform', min: 0, max: 1 }, 'optimizer.type': { values: ['adam', 'sgd'] } },
      search: { method: 'tpe', trials: 40, seed: 3, startupTrials: 4 },
    });
    // The objective peaks at labelSmoothing 0.8 with adam.
    const score = (p: Record<string, unknown>) =>
      -Math.abs((p.labelSmoothing as number) - 0.8) - (p['optimizer.type'] === 'adam' ? 0 : 0.5);
    const history: Observation[] = [];
    for (let i = 0; i < 30; i++) {
      const parameters = suggest(spec, i, history);
      history.push({ parameters, score: score(parameters) });
    }
    const again: Observation[] = [];
    for (let i = 0; i < 30; i++) {
      const parameters = suggest(spec, i, again);
      again.push({ parameters, score: score(parameters) });
    }
    assert.deepEqual(again, history, 'the same history gives the same suggestions');
    const late = history.slice(20);
    const near = late.filter((o) => Math.abs((o.parameters.labelSmoothing as number) - 0.8) < 0.2).length;
    assert.ok(near >= 7, `${near} of the last 10 within 0.2 of the best (a uniform draw: 4 expected)`);
    assert.ok(late.filter((o) => o.parameters['optimizer.type'] === 'adam').length >= 7, 'the better choice is drawn more often');
  });

  it('sets dotted paths on a copy of the base', () => {
    const spec = withParameters(base, { 'dataset.numClasses': 3 });
    assert.equal((spec.dataset as { numClasses: number }).numClasses, 3);
    assert.equal(base.dataset.numClasses, 2);
  });
});

describe('ASHA', () => {
  it('puts rungs at minEpochs x factor^k below maxEpochs', () => {
    assert.deepEqual(rungsOf({ minEpochs: 1, reductionFactor: 3, maxEpochs: 27 }), [1, 3, 9]);
    assert.deepEqual(rungsOf({ minEpochs: 2, reductionFactor: 2, maxEpochs: 9 }), [2, 4, 8]);
  });

  it("enters a rung with the trial's best objective up to it, or with the rung epoch's own", () => {
    const accuracies = [0.5, 0.8, 0.6, null];
    const maximize = { goal: 'maximize' } as const;
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((rung) => rungValueOf(accuracies, rung, 'best', maximize)),
      [0.5, 0.8, 0.8, 0.8, null],
    );
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((rung) => rungValueOf(accuracies, rung, 'latest', maximize)),
      [0.5, 0.8, 0.6, null, null],
    );
    assert.equal(rungValueOf([0.9, 0.4, 0.7], 3, 'best', { goal: 'minimize' }), 0.4, 'the best loss is the lowest');
    const parsed = sweep({ parameters: { seed: { values: [1] } }, earlyStopping: { type: 'asha', minEpochs: 1, maxEpochs: 3 } });
    assert.equal(parsed.earlyStopping.type === 'asha' && parsed.earlyStopping.judgeBy, 'best', 'best unless asked');
  });

  it('judges trial i in bracket i mod brackets, which skips its first rungs', () => {
    const asha = { minEpochs: 1, reductionFactor: 3, maxEpochs: 27, brackets: 4 };
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((trial) => bracketOf(asha, trial)),
      [
        { bracket: 0, rungs: [1, 3, 9] },
        { bracket: 1, rungs: [3, 9] },
        { bracket: 2, rungs: [9] },
        { bracket: 3, rungs: [] },
        { bracket: 0, rungs: [1, 3, 9] },
      ],
    );
    const spec = { earlyStopping: { type: 'asha' as const, ...asha, brackets: 2, judgeBy: 'best' as const } };
    assert.deepEqual(rungKeysOf(spec), [
      { bracket: 0, epoch: 1 },
      { bracket: 0, epoch: 3 },
      { bracket: 0, epoch: 9 },
      { bracket: 1, epoch: 3 },
      { bracket: 1, epoch: 9 },
    ]);
    const tooMany = SweepSpec.safeParse({
      base,
      parameters: { seed: { values: [1] } },
      search: { method: 'grid' },
      earlyStopping: { type: 'asha', minEpochs: 1, maxEpochs: 27, brackets: 5 },
    });
    assert.deepEqual(
      tooMany.error?.issues.map((issue) => issue.path.join('.')),
      ['earlyStopping.brackets'],
    );
  });

  it('lets a trial on only within the top ceil(n / factor) of those that reached the rung, ties to the earlier', () => {
    const arrivals = [0.5, 0.7, 0.6, 0.9, 0.6, 0.2].map((value, trial) => ({ trial, value }));
    const maximize = { goal: 'maximize' } as const;
    const decisions = arrivals.map((_, i) => ashaStops(arrivals, i + 1, 2, maximize));
    // n=1: first goes on; n=2 keeps 1: 0.7 beats 0.5; n=3 keeps 2: 0.6 is second; n=4 keeps 2: 0.9 first;
    // n=5 keeps 3: 0.6 ties the earlier 0.6 (fourth); n=6 keeps 3: 0.2 last.
    assert.deepEqual(decisions, [false, false, false, false, true, true]);
    const minimize = { goal: 'minimize' } as const;
    assert.equal(ashaStops(arrivals, 6, 2, minimize), false, 'the lowest loss goes on');
  });
});

describe('sweep specs', () => {
  it('names a path the mode lacks, a value the job spec refuses, and a grid past the limit', () => {
    assert.deepEqual(refusedPaths({ parameters: { 'optimizer.learningRte': { values: [0.1] } } }), ['parameters.optimizer.learningRte']);
    assert.deepEqual(refusedPaths({ parameters: { 'earlyStopping.patience': { values: [2] } } }), ['parameters.earlyStopping.patience']);
    assert.deepEqual(refusedPaths({ parameters: { batchSize: { values: [8, 0, 4000] } } }), [
      'parameters.batchSize.values.1',
      'parameters.batchSize.values.2',
    ]);
    assert.deepEqual(
      refusedPaths({
        parameters: { 'optimizer.learningRate': { distribution: 'uniform', min: 0.1, max: 20 } },
        search: { method: 'random', trials: 2 },
      }),
      ['parameters.optimizer.learningRate.max'],
    );
    assert.deepEqual(refusedPaths({ parameters: { 'optimizer.learningRate': { distribution: 'uniform', min: 0.1, max: 0.2 } } }), [
      'parameters.optimizer.learningRate',
    ]);
    assert.deepEqual(refusedPaths({ parameters: { mode: { values: ['feature_extraction'] } } }), ['parameters.mode']);
    const big = { values: [1, 2, 3, 4] };
    assert.deepEqual(refusedPaths({ parameters: { batchSize: big, seed: big } }), ['parameters']);
    assert.deepEqual(refusedPaths({ parameters: { batchSize: { values: [4] } }, parallelism: 5 }), ['parallelism']);
    assert.deepEqual(refusedPaths({ base: { ...base, validationSplit: 0 }, parameters: { batchSize: { values: [4] } } }), [
      'base.validationSplit',
    ]);
    assert.deepEqual(refusedPaths({ base: { ...base, batchSize: 'x' }, parameters: { batchSize: { values: [4] } } }), ['base.batchSize']);
  });

  it('refuses min > max and sets ASHA epochs', () => {
    const parsed = SweepSpec.safeParse({
      base,
      parameters: { seed: { distribution: 'uniform', min: 3, max: 1 } },
      search: { method: 'grid' },
    });
    assert.equal(parsed.success, false);
    assert.deepEqual(
      parsed.error?.issues.map((issue) => issue.path.join('.')),
      ['parameters.seed.min'],
    );
    const asha = { type: 'asha', minEpochs: 1, reductionFactor: 2, maxEpochs: 4 };
    const checked = checkSweep(sweep({ parameters: { batchSize: { values: [4] } }, earlyStopping: asha }), limits);
    assert.equal(checked.base.epochs, 4);
    assert.deepEqual(refusedPaths({ parameters: { epochs: { values: [2, 3] } }, earlyStopping: asha }), ['parameters.epochs']);
    const upsideDown = SweepSpec.safeParse({
      base,
      parameters: { seed: { values: [1] } },
      search: { method: 'grid' },
      objective: { metric: 'validation_loss', goal: 'maximize' },
    });
    assert.deepEqual(
      upsideDown.error?.issues.map((issue) => issue.path.join('.')),
      ['objective.goal'],
    );
  });
});
