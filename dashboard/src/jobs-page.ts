import type { JobList, JobStatus } from '../../schemas/job-status.js';
import { getJson } from './api.js';
import { badge, h, percent, type Cleanup } from './dom.js';

const REFRESH_MS = 2000;

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

function jobRow(status: JobStatus): HTMLElement {
  const accuracy = status.result?.validationAccuracy ?? status.latestMetrics?.validationAccuracy;
  return h(
    'tr',
    { 'data-job-id': status.id },
    h('td', {}, h('a', { href: `#/jobs/${status.id}`, class: 'mono' }, status.id.slice(0, 8))),
    h('td', {}, status.mode),
    h('td', {}, badge(status.state)),
    h('td', {}, progressCell(status)),
    h('td', { class: 'num' }, percent(accuracy)),
    h('td', { class: 'muted' }, new Date(status.createdAt).toLocaleString()),
  );
}

/** Every job of the caller, newest first, refreshed every two seconds. */
export function jobsPage(view: HTMLElement): Cleanup {
  const body = h('tbody');
  const note = h('p', { class: 'muted' });
  const head = h('tr', {}, ...['job', 'mode', 'state', 'progress', 'val. accuracy', 'submitted'].map((t) => h('th', {}, t)));
  view.replaceChildren(
    h(
      'div',
      { class: 'row', style: 'justify-content: space-between' },
      h('h1', {}, 'Jobs'),
      h('a', { class: 'button', href: '#/jobs/new' }, 'New job'),
    ),
    h('div', { class: 'card' }, h('table', { 'data-testid': 'jobs' }, h('thead', {}, head), body), note),
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const refresh = async () => {
    try {
      const list = await getJson<JobList>('/v1/jobs?limit=50');
      body.replaceChildren(...list.items.map(jobRow));
      note.textContent = list.total === 0 ? 'No jobs yet: submit one with New job.' : `${list.items.length} of ${list.total} jobs`;
    } catch (error) {
      note.textContent = (error as Error).message;
    }
    timer = setTimeout(() => void refresh(), REFRESH_MS);
  };
  void refresh();
  return () => clearTimeout(timer);
}
