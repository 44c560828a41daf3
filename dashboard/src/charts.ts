import uPlot from 'uplot';
import type { EpochMetrics } from '../../schemas/metrics.js';
import { h } from './dom.js';

export interface Line {
  label: string;
  stroke: string;
  dash?: number[];
}

interface Curve extends Line {
  value: (epoch: EpochMetrics) => number | null;
}

const TRAIN = '#2f6fed';
const VALIDATION = '#e0622d';

/** The run page's curves, as TensorBoard shows them: per epoch, train and validation together. */
const CHARTS: Array<{ title: string; curves: Curve[]; log?: boolean }> = [
  {
    title: 'Loss',
    curves: [
      { label: 'train', value: (e) => e.trainLoss, stroke: TRAIN },
      { label: 'validation', value: (e) => e.validationLoss, stroke: VALIDATION },
    ],
  },
  {
    title: 'Accuracy',
    curves: [
      { label: 'train', value: (e) => e.trainAccuracy, stroke: TRAIN },
      { label: 'validation', value: (e) => e.validationAccuracy, stroke: VALIDATION },
      { label: 'validation top-5', value: (e) => e.validationTop5Accuracy, stroke: VALIDATION, dash: [4, 4] },
    ],
  },
  { title: 'Learning rate', curves: [{ label: 'learning rate', value: (e) => e.learningRate, stroke: '#6b5bd2' }], log: true },
];

/** One uPlot chart of lines over epochs (or `x`), in a card; `setData` takes the x values and one list of values per line. */
export function lineChart(title: string, lines: Line[], { log = false, x = 'epoch' } = {}): { holder: HTMLElement; plot: uPlot } {
  const holder = h('div', { class: 'card chart', 'data-chart': title });
  const plot = new uPlot(
    {
      title,
      width: 380,
      height: 220,
      scales: { x: { time: false }, ...(log ? { y: { distr: 3 } } : {}) },
      // Epochs and trials are whole numbers: no ticks between them.
      axes: [{ label: x, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, {}],
      legend: { live: false },
      series: [
        { label: x },
        ...lines.map((l) => ({ label: l.label, stroke: l.stroke, dash: l.dash, width: 2, points: { show: true, size: 5 } })),
      ],
    },
    [[], ...lines.map(() => [])],
    holder,
  );
  return { holder, plot };
}

/** Live training curves: `add` appends an epoch (an epoch already shown is replaced) and redraws. */
export class TrainingCharts {
  readonly element: HTMLElement;
  private readonly epochs = new Map<number, EpochMetrics>();
  private readonly plots: Array<{ plot: uPlot; curves: Curve[] }> = [];

  constructor(history: readonly EpochMetrics[]) {
    this.element = h('div', { class: 'grid', 'data-testid': 'charts' });
    for (const chart of CHARTS) {
      const { holder, plot } = lineChart(chart.title, chart.curves, { log: chart.log });
      this.element.append(holder);
      this.plots.push({ plot, curves: chart.curves });
    }
    for (const epoch of history) this.epochs.set(epoch.epoch, epoch);
    this.redraw();
  }

  add(epoch: EpochMetrics): void {
    this.epochs.set(epoch.epoch, epoch);
    this.redraw();
  }

  /** Points drawn per chart: what a test reads to see curves grow. */
  get points(): number {
    return this.epochs.size;
  }

  private redraw(): void {
    const epochs = [...this.epochs.values()].sort((a, b) => a.epoch - b.epoch);
    for (const { plot, curves } of this.plots) {
      plot.setData([epochs.map((e) => e.epoch), ...curves.map((c) => epochs.map((e) => c.value(e)))]);
    }
    this.element.dataset.points = String(epochs.length);
  }

  destroy(): void {
    for (const { plot } of this.plots) plot.destroy();
  }
}
