import type { JobList, JobStatus } from '../../schemas/job-status.js';
import { getJson } from './api.js';
import { badge, every, h, JOB_STATES, MODES, percent, type Cleanup } from './dom.js';

const REFRESH_MS = 2000;
export const COMPARE_MAX = 8;

/** What the progress bar is about: the weights' download while it runs, else epochs and steps. */
function progressDetail({ progress }: JobStatus): string {
  const { download } = progress;
  if (progress.phase === 'downloading_weights' && download)
    return download.waiting
      ? `another worker is fetching the ${download.variant} weights`
      : `${download.variant} weights: ${(download.bytes / 1e6).toFixed(1)}${download.totalBytes ? ` of ${(download.totalBytes / 1e6).toFixed(1)}` : ''} MB`;
  return progress.totalSteps ? `epoch ${progress.epoch}/${progress.totalEpochs}, step ${progress.step}/${progress.totalSteps}` : '';
}

export function progressCell(status: JobStatus): HTMLElement {
  const { progress } = status;
  const detail = progressDetail(status);
  return h(
    'span',
    { class: 'row', style: 'gap: 8px' },
    h('progress', {
      max: 100,
      value: (progress.phase === 'downloading_weights' && progress.download?.percent) || progress.percent,
      'aria-label': 'progress',
    }),
    h('span', {}, `${progress.percent.toFixed(0)}% ${progress.phase}`),
    h('span', { class: 'muted' }, detail),
  );
}

/** A run's name and tags (each tag a link to the list filtered by it). */
export function labels(run: { spec: unknown }): HTMLElement {
  const { name, tags = [] } = run.spec as { name?: string; tags?: string[] };
  return h(
    'span',
    { class: 'labels' },
    name ? h('strong', { 'data-name': name }, name) : null,
    ...tags.map((tag) => {
      // A trial's tag names its sweep: shown short, linking to the sweep's page.
      const sweep = /^sweep:([0-9a-f-]{36})$/.exec(tag)?.[1];
      return sweep
        ? h('a', { class: 'tag', href: `#/sweeps/${sweep}`, title: tag }, `sweep ${sweep.slice(0, 8)}`)
        : h('a', { class: 'tag', href: `#/jobs?tag=${encodeURIComponent(tag)}` }, tag);
    }),
  );
}

/** Check boxes that pick 2-8 jobs and a button that opens them side by side. */
export function compareSelection(): { box: (id: string) => HTMLElement; button: HTMLButtonElement } {
  const chosen = new Set<string>();
  const button = h('button', { 'data-testid': 'compare', disabled: true }, 'Compare');
  const update = () => {
    button.disabled = chosen.size < 2 || chosen.size > COMPARE_MAX;
    button.textContent = chosen.size ? `Compare ${chosen.size}` : 'Compare';
  };
  button.addEventListener('click', () => (location.hash = `#/compare/${[...chosen].join(',')}`));
  const box = (id: string) =>
    h('input', {
      type: 'checkbox',
      'aria-label': `compare ${id}`,
      'data-compare': id,
      checked: chosen.has(id),
      onchange: (event: Event) => {
        if ((event.target as HTMLInputElement).checked) chosen.add(id);
        else chosen.delete(id);
        update();
      },
    });
  return { box, button };
}

function jobRow(status: JobStatus, box: HTMLElement): HTMLElement {
  const accuracy = status.result?.validationAccuracy ?? status.latestMetrics?.validationAccuracy;
  return h(
    'tr',
    { 'data-job-id': status.id },
    h('td', {}, box),
    h('td', {}, h('a', { href: `#/jobs/${status.id}`, class: 'mono' }, status.id.slice(0, 8))),
    h('td', {}, labels(status)),
    h('td', {}, status.mode),
    h('td', {}, badge(status.state)),
    h('td', {}, progressCell(status)),
    h('td', { class: 'num' }, percent(accuracy)),
    h('td', { class: 'muted' }, new Date(status.createdAt).toLocaleString()),
  );
}

const FILTERS = ['name', 'tag', 'mode', 'state'] as const;

/** The filter form, filled from the address (`#/jobs?tag=baseline`); submitting it changes the address. */
function filterForm(query: URLSearchParams): HTMLFormElement {
  const choice = (name: string, values: readonly string[]) =>
    h(
      'select',
      { name, 'aria-label': name },
      h('option', { value: '' }, `any ${name}`),
      ...values.map((v) => h('option', { value: v, selected: query.get(name) === v }, v)),
    );
  const text = (name: string) => h('input', { name, placeholder: name, 'aria-label': name, value: query.get(name) ?? '' });
  const form = h(
    'form',
    { class: 'row', 'data-testid': 'job-filter' },
    text('name'),
    text('tag'),
    choice('mode', MODES),
    choice('state', JOB_STATES),
    h('button', { type: 'submit' }, 'Filter'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const chosen = new URLSearchParams();
    const data = new FormData(form);
    for (const key of FILTERS) {
      const value = (data.get(key) as string | null)?.trim();
      if (value) chosen.set(key, value);
    }
    location.hash = chosen.size ? `#/jobs?${chosen}` : '#/jobs';
  });
  return form;
}

/** The caller's jobs, newest first, filtered by name, tag, mode and state, refreshed every two seconds. */
export function jobsPage(view: HTMLElement, query: URLSearchParams): Cleanup {
  const body = h('tbody');
  const note = h('p', { class: 'muted' });
  const { box, button } = compareSelection();
  const columns = ['', 'job', 'name / tags', 'mode', 'state', 'progress', 'val. accuracy', 'submitted'];
  const head = h('tr', {}, ...columns.map((t) => h('th', {}, t)));
  view.replaceChildren(
    h(
      'div',
      { class: 'row', style: 'justify-content: space-between' },
      h('h1', {}, 'Jobs'),
      h('span', { class: 'row' }, button, h('a', { class: 'button', href: '#/jobs/new' }, 'New job')),
    ),
    h('div', { class: 'card' }, filterForm(query), h('table', { 'data-testid': 'jobs' }, h('thead', {}, head), body), note),
  );
  const filters = new URLSearchParams([...query].filter(([key]) => (FILTERS as readonly string[]).includes(key)));
  return every(REFRESH_MS, async () => {
    try {
      const list = await getJson<JobList>(`/v1/jobs?limit=50${filters.size ? `&${filters}` : ''}`);
      body.replaceChildren(...list.items.map((status) => jobRow(status, box(status.id))));
      const filtered = filters.size ? ' matching the filter' : '';
      note.textContent =
        list.total === 0
          ? filtered
            ? 'No jobs match the filter.'
            : 'No jobs yet: submit one with New job.'
          : `${list.items.length} of ${list.total} jobs${filtered}`;
    } catch (error) {
      note.textContent = (error as Error).message;
    }
  });
}
