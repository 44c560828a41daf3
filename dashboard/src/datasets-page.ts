import type { DatasetRecord, PreflightReport } from '../../schemas/dataset.js';
import { type ApiError, getJson, sendJson, uploadFile } from './api.js';
import { h, type Cleanup } from './dom.js';

type DatasetSummary = Omit<DatasetRecord, 'preflight'>;

/** The preflight's findings: usable images per class, unreadable files, duplicates. */
export function preflightReport(report: PreflightReport): HTMLElement {
  return h(
    'div',
    { 'data-testid': 'preflight' },
    h(
      'p',
      {},
      `${report.usable} of ${report.images} images usable in ${report.classes.length} classes; ${report.bad.length} unusable, ${report.duplicates.length} groups of duplicates`,
    ),
    h(
      'table',
      {},
      h('tr', {}, h('th', {}, 'class'), h('th', { class: 'num' }, 'images'), h('th', { class: 'num' }, 'usable')),
      ...report.classes.map((c) =>
        h('tr', {}, h('td', {}, c.name), h('td', { class: 'num' }, c.images), h('td', { class: 'num' }, c.usable)),
      ),
    ),
    report.bad.length
      ? h(
          'details',
          {},
          h('summary', {}, `${report.bad.length} unusable files`),
          h('ul', {}, ...report.bad.slice(0, 100).map((b) => h('li', {}, h('code', {}, b.file), ` ${b.reason}`))),
        )
      : null,
  );
}

function datasetRow(dataset: DatasetSummary, reload: () => void): HTMLElement {
  const remove = () => void sendJson('DELETE', `/v1/datasets/${dataset.id}`).then(reload, (error: Error) => alert(error.message));
  return h(
    'tr',
    { 'data-dataset-id': dataset.id },
    h('td', {}, dataset.name),
    h('td', { class: 'mono' }, dataset.id),
    h('td', { class: 'num' }, dataset.images),
    h('td', {}, dataset.classNames.join(', ')),
    h(
      'td',
      {},
      h('a', { class: 'button', href: `#/jobs/new/upload/${dataset.id}` }, 'New job on it'),
      ' ',
      h('button', { class: 'danger', onclick: remove }, 'Delete'),
    ),
  );
}

function uploadCard(onUploaded: () => void): HTMLElement {
  const input = h('input', { type: 'file', accept: '.zip,.tar.gz,.tgz', 'data-testid': 'upload-input' });
  const bar = h('progress', { max: 1, value: 0, hidden: true });
  const outcome = h('div');
  input.addEventListener('change', () => {
    const file = input.files?.[0];
    if (!file) return;
    bar.hidden = false;
    outcome.replaceChildren(h('p', { class: 'muted' }, `uploading ${file.name}; the service checks every image once it has arrived…`));
    uploadFile(`/v1/datasets?name=${encodeURIComponent(file.name)}`, file, (fraction) => (bar.value = fraction)).then(
      (record) => {
        outcome.replaceChildren(
          h('h2', {}, `Uploaded ${(record as DatasetRecord).name}`),
          preflightReport((record as DatasetRecord).preflight),
        );
        onUploaded();
      },
      (error: ApiError) => outcome.replaceChildren(h('div', { class: 'problem', role: 'alert' }, error.message)),
    );
  });
  return h(
    'div',
    { class: 'card' },
    h('h2', {}, 'Upload a dataset'),
    h('p', { class: 'muted' }, 'A .zip or .tar.gz with one folder of images per class.'),
    h('div', { class: 'row' }, input, bar),
    outcome,
  );
}

/** Uploaded datasets: upload one (with its preflight report), start a job on one, delete one. */
export function datasetsPage(view: HTMLElement): Cleanup {
  const body = h('tbody');
  const reload = () =>
    void getJson<{ items: DatasetSummary[] }>('/v1/datasets').then(
      ({ items }) => body.replaceChildren(...items.map((d) => datasetRow(d, reload))),
      (error: Error) => body.replaceChildren(h('tr', {}, h('td', { colspan: 5 }, error.message))),
    );
  const head = h('tr', {}, ...['name', 'id', 'images', 'classes', ''].map((t) => h('th', {}, t)));
  view.replaceChildren(
    h('h1', {}, 'Datasets'),
    uploadCard(reload),
    h('div', { class: 'card' }, h('table', { 'data-testid': 'datasets' }, h('thead', {}, head), body)),
  );
  reload();
  return () => undefined;
}
