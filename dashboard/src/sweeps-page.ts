import type { SweepList, SweepStatus, Trial } from '../../schemas/sweep.js';
import { getJson, saveDownload, sendJson } from './api.js';
import { badge, every, FINISHED, formatValue, h, type Cleanup, when } from './dom.js';
import { compareSelection, labels } from './jobs-page.js';
import { bestSoFarChart, parallelCoordinates, scoreOf } from './sweep-charts.js';

const REFRESH_MS = 2000;
const ended = (sweep: SweepStatus) => sweep.trials.filter((t) => FINISHED.has(t.state)).length;

/** The caller's sweeps, newest first. */
export function sweepsPage(view: HTMLElement): Cleanup {
  const body = h('tbody');
  const note = h('p', { class: 'muted' });
  const head = h('tr', {}, ...['sweep', 'name / tags', 'state', 'search', 'trials', 'best', 'submitted'].map((t) => h('th', {}, t)));
  view.replaceChildren(
    h('h1', {}, 'Sweeps'),
    h('div', { class: 'card' }, h('table', { 'data-testid': 'sweeps' }, h('thead', {}, head), body), note),
  );
  return every(REFRESH_MS, async () => {
    try {
      const list = await getJson<SweepList>('/v1/sweeps?limit=50');
      body.replaceChildren(
        ...list.items.map((sweep) =>
          h(
            'tr',
            { 'data-sweep-id': sweep.id },
            h('td', {}, h('a', { href: `#/sweeps/${sweep.id}`, class: 'mono' }, sweep.id.slice(0, 8))),
            h('td', {}, labels(sweep)),
            h('td', {}, badge(sweep.state)),
            h('td', {}, sweep.spec.search.method),
            h('td', { class: 'num' }, sweep.totalTrials),
            h('td', { class: 'num' }, sweep.best ? formatValue(sweep.best.value) : '–'),
            h('td', { class: 'muted' }, when(sweep.createdAt)),
          ),
        ),
      );
      note.textContent = list.total
        ? `${list.items.length} of ${list.total} sweeps`
        : 'No sweeps yet: POST /v1/sweeps or `retrain sweeps submit`.';
    } catch (error) {
      note.textContent = (error as Error).message;
    }
  });
}

function summary(sweep: SweepStatus, onCancel: () => void): HTMLElement {
  const { spec } = sweep;
  const stopping =
    spec.earlyStopping.type === 'asha'
      ? `ASHA from ${spec.earlyStopping.minEpochs} epochs, factor ${spec.earlyStopping.reductionFactor}, ${spec.earlyStopping.brackets} bracket(s), judged by the ${spec.earlyStopping.judgeBy} value`
      : 'no early stopping';
  return h(
    'div',
    { class: 'card', 'data-testid': 'sweep-header' },
    h(
      'div',
      { class: 'row' },
      badge(sweep.state),
      labels(sweep),
      h('span', {}, `${ended(sweep)} of ${sweep.totalTrials} trials ended`),
      h(
        'span',
        { class: 'muted' },
        `${spec.search.method} search · ${spec.objective.goal} ${spec.objective.metric} · ${stopping} · ${spec.parallelism} at once`,
      ),
      h('button', { class: 'danger', disabled: sweep.state !== 'running', onclick: onCancel }, 'Cancel'),
    ),
  );
}

/** The best trial so far, or the promoted one once the sweep completed, with its checkpoint. */
function bestCard(sweep: SweepStatus, message: HTMLElement): HTMLElement {
  const { best } = sweep;
  const title = sweep.state === 'completed' ? 'Promoted trial' : 'Best trial so far';
  if (!best)
    return h(
      'div',
      { class: 'card', 'data-testid': 'sweep-best' },
      h('h2', {}, title),
      h('p', { class: 'muted' }, 'No trial has reported its objective yet.'),
    );
  const download = () =>
    saveDownload(`/v1/jobs/${best.job}/checkpoint?epoch=best&format=safetensors`).then(
      (name) => (message.textContent = `saved ${name}`),
      (error: Error) => (message.textContent = error.message),
    );
  return h(
    'div',
    { class: 'card', 'data-testid': 'sweep-best', 'data-trial': best.trial, 'data-promoted': String(sweep.state === 'completed') },
    h('h2', {}, title),
    h(
      'div',
      { class: 'row' },
      h('strong', {}, `trial ${best.trial}`),
      h('a', { href: `#/jobs/${best.job}`, class: 'mono' }, best.job.slice(0, 8)),
      h('span', {}, `${sweep.spec.objective.metric} ${formatValue(best.value)} at epoch ${best.epoch}`),
      sweep.spec.promote && sweep.state === 'completed' ? h('a', { href: '#/models' }, `model alias ${sweep.spec.promote}`) : null,
      h('button', { 'data-download': 'best', onclick: () => void download() }, 'Download its best checkpoint'),
      message,
    ),
  );
}

type Column = { label: string; value: (t: Trial) => number | string | null; numeric?: boolean };

/** Trials, sortable by any column (by the objective, best first, until a header is clicked). */
class TrialsTable {
  readonly element: HTMLElement;
  private sortBy = 'objective';
  private descending = true;
  private sweep: SweepStatus | null = null;
  readonly selection = compareSelection();

  constructor() {
    this.element = h('table', { 'data-testid': 'trials' });
  }

  private columns(sweep: SweepStatus): Column[] {
    return [
      { label: 'trial', value: (t) => t.index, numeric: true },
      { label: 'state', value: (t) => t.state },
      ...Object.keys(sweep.spec.parameters).map((path) => ({ label: path, value: (t: Trial) => formatValue(t.parameters[path]) })),
      { label: 'epochs', value: (t) => t.epochs.length, numeric: true },
      { label: 'objective', value: (t) => (t.best ? scoreOf(sweep, t.best.value) : null), numeric: true },
      { label: 'rungs', value: (t) => t.rungs.map((r) => `${r.epoch}: ${r.decision}`).join(', ') },
    ];
  }

  render(sweep: SweepStatus): void {
    this.sweep = sweep;
    const columns = this.columns(sweep);
    const key = columns.find((c) => c.label === this.sortBy) ?? columns[0];
    const order = (t: Trial) => key.value(t) ?? (key.numeric ? -Infinity : '');
    const trials = [...sweep.trials].sort((a, b) => {
      const [x, y] = [order(a), order(b)];
      const compared = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return (this.descending ? -compared : compared) || a.index - b.index;
    });
    const head = h(
      'tr',
      {},
      h('th', {}, ''),
      h('th', {}, 'job'),
      ...columns.map((c) =>
        h(
          'th',
          {
            class: c.numeric ? 'num sortable' : 'sortable',
            'data-sort': c.label,
            'aria-sort': c === key ? (this.descending ? 'descending' : 'ascending') : null,
            onclick: () => this.sort(c.label),
          },
          c.label === 'objective' ? `${sweep.spec.objective.metric} (best)` : c.label,
        ),
      ),
    );
    this.element.replaceChildren(h('thead', {}, head), h('tbody', {}, ...trials.map((t) => this.row(t, sweep))));
  }

  private row(trial: Trial, sweep: SweepStatus): HTMLElement {
    return h(
      'tr',
      { 'data-trial': trial.index, class: sweep.best?.trial === trial.index ? 'best' : '' },
      h('td', {}, this.selection.box(trial.job)),
      h('td', {}, h('a', { href: `#/jobs/${trial.job}`, class: 'mono' }, trial.job.slice(0, 8))),
      h('td', { class: 'num' }, trial.index),
      h('td', {}, badge(trial.state)),
      ...Object.keys(sweep.spec.parameters).map((path) => h('td', { class: 'mono' }, formatValue(trial.parameters[path]))),
      h('td', { class: 'num' }, trial.epochs.length),
      h(
        'td',
        { class: 'num', 'data-objective': trial.best?.value ?? '' },
        trial.best ? `${formatValue(trial.best.value)} (epoch ${trial.best.epoch})` : '–',
      ),
      h('td', { class: 'muted' }, trial.rungs.map((r) => `${r.epoch}: ${r.decision}`).join(', ')),
    );
  }

  private sort(label: string): void {
    this.descending = this.sortBy === label ? !this.descending : label === 'objective';
    this.sortBy = label;
    if (this.sweep) this.render(this.sweep);
  }
}

/** A sweep: its state, the best trial (promoted at the end), the best-so-far curve, parameters against the objective, and its trials. */
export function sweepPage(view: HTMLElement, id: string): Cleanup {
  const top = h('div');
  const bestSlot = h('div');
  const parallelSlot = h('div');
  const message = h('span', { class: 'muted' });
  const chart = bestSoFarChart();
  const trials = new TrialsTable();
  view.replaceChildren(
    h('h1', {}, 'Sweep ', h('span', { class: 'mono' }, id)),
    top,
    bestSlot,
    h('div', { class: 'grid' }, chart.holder),
    parallelSlot,
    h(
      'div',
      { class: 'card' },
      h('div', { class: 'row', style: 'justify-content: space-between' }, h('h2', {}, 'Trials'), trials.selection.button),
      trials.element,
    ),
  );
  let sweep: SweepStatus | null = null;
  const show = (next: SweepStatus) => {
    sweep = next;
    top.replaceChildren(summary(next, cancel));
    bestSlot.replaceChildren(bestCard(next, message));
    chart.update(next);
    parallelSlot.replaceChildren(parallelCoordinates(next));
    trials.render(next);
  };
  const cancel = () => void sendJson<SweepStatus>('DELETE', `/v1/sweeps/${id}`).then(show);
  const stop = every(REFRESH_MS, async () => {
    if (sweep && sweep.state !== 'running') return;
    try {
      show(await getJson<SweepStatus>(`/v1/sweeps/${id}`));
    } catch (error) {
      top.replaceChildren(h('div', { class: 'problem', role: 'alert' }, (error as Error).message));
    }
  });
  return () => {
    stop();
    chart.plot.destroy();
  };
}
