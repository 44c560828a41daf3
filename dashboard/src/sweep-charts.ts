import type uPlot from 'uplot';
import type { SweepParameter, SweepStatus, Trial } from '../../schemas/sweep.js';
import { lineChart } from './charts.js';
import { formatValue, h, svg } from './dom.js';

/** How good a value is on the sweep's objective: higher is better either way. */
export const scoreOf = (sweep: SweepStatus, value: number) => (sweep.spec.objective.goal === 'maximize' ? value : -value);

/** Each trial's best objective and the best of the trials up to it, by trial index (trials start in that order). */
export function bestSoFarChart(): { holder: HTMLElement; update: (sweep: SweepStatus) => void; plot: uPlot } {
  const { holder, plot } = lineChart(
    'Best so far',
    [
      { label: "trial's best", stroke: '#9aa4b2', dash: [3, 3] },
      { label: 'best so far', stroke: '#e0622d' },
    ],
    { x: 'trial' },
  );
  holder.dataset.testid = 'best-so-far';
  const update = (sweep: SweepStatus) => {
    let best: number | null = null;
    const running: Array<number | null> = [];
    for (const trial of sweep.trials) {
      const value = trial.best?.value ?? null;
      if (value !== null && (best === null || scoreOf(sweep, value) > scoreOf(sweep, best))) best = value;
      running.push(best);
    }
    plot.setData([sweep.trials.map((t) => t.index), sweep.trials.map((t) => t.best?.value ?? null), running]);
    holder.dataset.points = String(sweep.trials.filter((t) => t.best).length);
  };
  return { holder, update, plot };
}

interface Axis {
  label: string;
  /** Where a trial sits on the axis, 0 (bottom) to 1 (top), or null when it has no value there. */
  position: (trial: Trial) => number | null;
  ticks: [string, string];
}

/** Axis ends and tooltips: three digits are enough on a drawn scale. */
const format = (value: unknown) => formatValue(value, 3);

/** A parameter's axis: numbers on a linear or (for rates spanning decades) log scale, other choices evenly spaced. */
function parameterAxis(path: string, parameter: SweepParameter, trials: Trial[]): Axis {
  const values = trials.map((t) => t.parameters[path]);
  const choices = 'values' in parameter ? parameter.values : null;
  if (choices && !choices.every((v) => typeof v === 'number')) {
    const keys = choices.map((v) => JSON.stringify(v));
    const spread = Math.max(1, keys.length - 1);
    return {
      label: path,
      position: (t) =>
        keys.includes(JSON.stringify(t.parameters[path])) ? keys.indexOf(JSON.stringify(t.parameters[path])) / spread : null,
      ticks: [format(choices[0]), format(choices.at(-1))],
    };
  }
  const bounds = choices ? choices : 'min' in parameter ? [parameter.min, parameter.max] : [];
  const numbers = [...bounds, ...values.filter((v): v is number => typeof v === 'number')];
  const low = Math.min(...numbers);
  const high = Math.max(...numbers);
  const log = ('distribution' in parameter && parameter.distribution === 'log_uniform') || (low > 0 && high / low >= 100);
  const at = (v: number) => (log ? Math.log(v) : v);
  return {
    label: path,
    position: (t) => {
      const v = t.parameters[path];
      return typeof v === 'number' ? (high === low ? 0.5 : (at(v) - at(low)) / (at(high) - at(low))) : null;
    },
    ticks: [format(low), format(high)],
  };
}

function objectiveAxis(sweep: SweepStatus): Axis {
  const values = sweep.trials.flatMap((t) => (t.best ? [t.best.value] : []));
  const low = Math.min(...values);
  const high = Math.max(...values);
  return {
    label: sweep.spec.objective.metric,
    position: (t) => (t.best ? (high === low ? 0.5 : (t.best.value - low) / (high - low)) : null),
    ticks: [format(low), format(high)],
  };
}

const WIDTH = 760;
const HEIGHT = 280;
const MARGIN = { top: 36, bottom: 24, side: 90 };

/** Parallel coordinates: one axis per parameter and one for the objective; each trial with a value is a line, coloured by its score. */
export function parallelCoordinates(sweep: SweepStatus): HTMLElement {
  const scored = sweep.trials.flatMap((trial) => (trial.best ? [{ ...trial, best: trial.best }] : []));
  const axes = [...Object.entries(sweep.spec.parameters).map(([path, p]) => parameterAxis(path, p, sweep.trials)), objectiveAxis(sweep)];
  const x = (i: number) => MARGIN.side + (i * (WIDTH - 2 * MARGIN.side)) / Math.max(1, axes.length - 1);
  const y = (position: number) => MARGIN.top + (1 - position) * (HEIGHT - MARGIN.top - MARGIN.bottom);
  const scores = scored.map((t) => scoreOf(sweep, t.best.value));
  const [worst, top] = [Math.min(...scores), Math.max(...scores)];
  const lines = scored.map((trial) => {
    const share = top === worst ? 1 : (scoreOf(sweep, trial.best.value) - worst) / (top - worst);
    const points = axes.flatMap((axis, i) => {
      const position = axis.position(trial);
      return position === null ? [] : [`${x(i).toFixed(1)},${y(position).toFixed(1)}`];
    });
    const isBest = sweep.best?.trial === trial.index;
    return svg(
      'polyline',
      {
        points: points.join(' '),
        fill: 'none',
        stroke: isBest ? '#e0622d' : `rgba(47, 111, 237, ${(0.2 + 0.8 * share).toFixed(2)})`,
        'stroke-width': isBest ? 3 : 1.5,
        'data-trial': trial.index,
      },
      svg('title', {}, `trial ${trial.index}: ${format(trial.best.value)}`),
    );
  });
  const axisMarks = axes.flatMap((axis, i) => [
    svg('line', { x1: x(i), x2: x(i), y1: y(0), y2: y(1), stroke: '#444' }),
    svg('text', { x: x(i), y: 14, 'text-anchor': 'middle', 'font-size': 11, 'font-weight': 600 }, axis.label),
    svg('text', { x: x(i), y: y(1) - 5, 'text-anchor': 'middle', 'font-size': 10 }, axis.ticks[1]),
    svg('text', { x: x(i), y: y(0) + 14, 'text-anchor': 'middle', 'font-size': 10 }, axis.ticks[0]),
  ]);
  return h(
    'div',
    { class: 'card', 'data-testid': 'parallel-coordinates', 'data-lines': scored.length },
    h('h2', {}, 'Parameters against the objective'),
    scored.length
      ? svg(
          'svg',
          { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, width: WIDTH, height: HEIGHT, style: 'max-width: 100%; height: auto', role: 'img' },
          ...lines,
          ...axisMarks,
        )
      : h('p', { class: 'muted' }, 'No trial has reported its objective yet.'),
  );
}
