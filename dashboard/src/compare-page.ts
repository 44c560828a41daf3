import type uPlot from 'uplot';
import type { JobStatus } from '../../schemas/job-status.js';
import type { EpochMetrics, Metrics } from '../../schemas/metrics.js';
import { getJson } from './api.js';
import { lineChart } from './charts.js';
import { badge, duration, h, percent, type Cleanup } from './dom.js';
import { COMPARE_MAX, labels } from './jobs-page.js';
import { flatten } from './spec-view.js';

/** One colour per compared job, in the order given. */
const PALETTE = ['#2f6fed', '#e0622d', '#2a9d5b', '#b33dc6', '#d4a017', '#17a2b8', '#8c564b', '#555'];

interface Run {
  status: JobStatus;
  metrics: Metrics;
}

const short = (id: string) => id.slice(0, 8);
const runLabel = ({ status }: Run) => {
  const { name } = status.spec as { name?: string };
  return name ? `${name} (${short(status.id)})` : short(status.id);
};

/** The runs' curves of one metric overlaid: epochs on x, one line per run (gaps where a run has no such epoch). */
function overlay(runs: Run[], title: string, value: (e: EpochMetrics) => number | null, plots: uPlot[]): HTMLElement {
  const { holder, plot } = lineChart(
    title,
    runs.map((run, i) => ({ label: runLabel(run), stroke: PALETTE[i] })),
  );
  const epochs = [...new Set(runs.flatMap((r) => r.metrics.epochs.map((e) => e.epoch)))].sort((a, b) => a - b);
  const lines = runs.map((r) =>
    epochs.map((n) => {
      const epoch = r.metrics.epochs.find((e) => e.epoch === n);
      return epoch ? value(epoch) : null;
    }),
  );
  plot.setData([epochs, ...lines]);
  plots.push(plot);
  return holder;
}

/** Every spec path of any run, one column per run; a row whose values differ is marked. */
function specTable(runs: Run[]): HTMLElement {
  const specs = runs.map((r) => flatten(r.status.spec));
  const paths = [...new Set(specs.flatMap((s) => [...s.keys()]))].sort((a, b) => a.localeCompare(b));
  const rows = paths.map((path) => {
    const values = specs.map((s) => s.get(path) ?? '–');
    const differs = new Set(values).size > 1;
    return h(
      'tr',
      { class: differs ? 'diff' : '', 'data-path': path, 'data-differs': differs },
      h('th', {}, path),
      ...values.map((v) => h('td', { class: 'mono' }, v)),
    );
  });
  return h('table', { class: 'keys', 'data-testid': 'compare-spec' }, header(runs, 'spec'), ...rows);
}

function header(runs: Run[], first: string): HTMLElement {
  return h(
    'tr',
    {},
    h('th', {}, first),
    ...runs.map((run, i) =>
      h(
        'th',
        {},
        h('span', { class: 'swatch', style: `background: ${PALETTE[i]}` }),
        h('a', { href: `#/jobs/${run.status.id}`, class: 'mono' }, short(run.status.id)),
      ),
    ),
  );
}

/** The numbers a comparison is read for: state, epochs, last and best validation scores, time. */
function finalMetrics(runs: Run[]): HTMLElement {
  const last = (r: Run) => r.metrics.epochs.at(-1);
  const bestAccuracy = (r: Run) => Math.max(...r.metrics.epochs.map((e) => e.validationAccuracy ?? -Infinity));
  const rows: Array<[string, (r: Run) => Node | string]> = [
    ['name / tags', (r) => labels(r.status)],
    ['state', (r) => badge(r.status.state)],
    ['epochs', (r) => String(r.metrics.epochs.length)],
    ['final val. accuracy', (r) => percent(last(r)?.validationAccuracy)],
    ['best val. accuracy', (r) => (Number.isFinite(bestAccuracy(r)) ? percent(bestAccuracy(r)) : '–')],
    ['final val. loss', (r) => last(r)?.validationLoss?.toFixed(4) ?? '–'],
    ['final train loss', (r) => last(r)?.trainLoss?.toFixed(4) ?? '–'],
    ['dataset digest', (r) => r.status.dataset?.digest?.slice(0, 12) ?? '–'],
    ['ran', (r) => duration(r.status.startedAt, r.status.finishedAt)],
  ];
  return h(
    'table',
    { class: 'keys', 'data-testid': 'compare-metrics' },
    header(runs, ''),
    ...rows.map(([label, cell]) =>
      h('tr', { 'data-metric': label }, h('th', {}, label), ...runs.map((r) => h('td', { class: 'num' }, cell(r)))),
    ),
  );
}

/** 2-8 jobs side by side: their curves overlaid, their specs with the differences marked, their final metrics. */
export function comparePage(view: HTMLElement, ids: string[]): Cleanup {
  const unique = [...new Set(ids)];
  view.replaceChildren(h('h1', {}, `Compare ${unique.length} jobs`));
  if (unique.length < 2 || unique.length > COMPARE_MAX) {
    view.append(h('div', { class: 'problem', role: 'alert' }, `Pick 2 to ${COMPARE_MAX} jobs to compare (${unique.length} given).`));
    return () => undefined;
  }
  const plots: uPlot[] = [];
  const load = (id: string) =>
    Promise.all([getJson<JobStatus>(`/v1/jobs/${id}`), getJson<Metrics>(`/v1/jobs/${id}/metrics`)]).then(([status, metrics]) => ({
      status,
      metrics,
    }));
  Promise.all(unique.map(load)).then(
    (runs) =>
      view.append(
        h(
          'div',
          { class: 'grid', 'data-testid': 'compare-charts' },
          overlay(runs, 'Validation accuracy', (e) => e.validationAccuracy, plots),
          overlay(runs, 'Validation loss', (e) => e.validationLoss, plots),
          overlay(runs, 'Train loss', (e) => e.trainLoss, plots),
        ),
        h('div', { class: 'card' }, h('h2', {}, 'Final metrics'), finalMetrics(runs)),
        h('div', { class: 'card' }, h('h2', {}, 'Specs'), h('p', { class: 'muted' }, 'Rows that differ are marked.'), specTable(runs)),
      ),
    (error: Error) => view.append(h('div', { class: 'problem', role: 'alert' }, error.message)),
  );
  return () => plots.forEach((plot) => plot.destroy());
}
