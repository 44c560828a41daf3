import uPlot from 'uplot';
import type { EpochMetrics } from '../../schemas/metrics.js';
import { h } from './dom.js';

interface Curve {
  label: string;
  value: (epoch: EpochMetrics) => number | null;
  stroke: string;
  dash?: number[];
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

/** Live training curves: `add` appends an epoch (an epoch already shown is replaced) and redraws. */
export class TrainingCharts {
  readonly element: HTMLElement;
  private readonly epochs = new Map<number, EpochMetrics>();
  private readonly plots: Array<{ plot: uPlot; curves: Curve[] }> = [];

  constructor(history: readonly EpochMetrics[]) {
    this.element = h('div', { class: 'grid', 'data-testid': 'charts' });
    for (const chart of CHARTS) {
      const holder = h('div', { class: 'card chart', 'data-chart': chart.title });
      this.element.append(holder);
      const plot = new uPlot(
        {
          title: chart.title,
          width: 380,
          height: 220,
          scales: { x: { time: false }, ...(chart.log ? { y: { distr: 3 } } : {}) },
          axes: [{ label: 'epoch' }, {}],
          legend: { live: false },
          series: [
            { label: 'epoch' },
            ...chart.curves.map((c) => ({ label: c.label, stroke: c.stroke, dash: c.dash, width: 2, points: { show: true, size: 5 } })),
          ],
        },
        [[], ...chart.curves.map(() => [])],
        holder,
      );
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
