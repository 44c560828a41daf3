import type { ModelAlias } from '../../schemas/model-alias.js';
import { getJson } from './api.js';
import { h, type Cleanup, when } from './dom.js';

type AliasListItem = Omit<ModelAlias, 'history'>;

const target = (change: { job: string; checkpoint: string | number }) =>
  h('span', {}, h('a', { href: `#/jobs/${change.job}`, class: 'mono' }, change.job.slice(0, 8)), ` · ${change.checkpoint}`);

/** What an alias pointed to, newest first, loaded when its row is opened. */
function historyOf(alias: AliasListItem): HTMLElement {
  const list = h('ol', { class: 'history' });
  const details = h('details', { 'data-history': alias.name }, h('summary', {}, 'history'), list);
  details.addEventListener(
    'toggle',
    () =>
      void getJson<ModelAlias>(`/v1/models/${alias.name}`).then(
        ({ history }) =>
          list.replaceChildren(
            ...history.map((change) => h('li', {}, target(change), h('span', { class: 'muted' }, ` since ${when(change.at)}`))),
          ),
        (error: Error) => list.replaceChildren(h('li', {}, error.message)),
      ),
    { once: true },
  );
  return details;
}

/** The caller's model aliases: the name a client predicts with, the checkpoint it serves now, and its history. */
export function modelsPage(view: HTMLElement): Cleanup {
  const body = h('tbody');
  const note = h('p', { class: 'muted' });
  const head = h('tr', {}, ...['alias', 'serves', 'moved', 'predict at', ''].map((t) => h('th', {}, t)));
  view.replaceChildren(
    h('h1', {}, 'Models'),
    h('div', { class: 'card' }, h('table', { 'data-testid': 'models' }, h('thead', {}, head), body), note),
  );
  getJson<{ items: AliasListItem[] }>('/v1/models').then(
    ({ items }) => {
      body.replaceChildren(
        ...items.map((alias) =>
          h(
            'tr',
            { 'data-alias': alias.name },
            h('td', {}, h('strong', {}, alias.name)),
            h('td', {}, target(alias)),
            h('td', { class: 'muted' }, when(alias.updatedAt)),
            h('td', { class: 'mono' }, `POST /v1/models/${alias.name}/predict`),
            h('td', {}, historyOf(alias)),
          ),
        ),
      );
      note.textContent = items.length ? '' : 'No model aliases yet: PUT /v1/models/NAME {"job": ...} or `retrain models set NAME JOB`.';
    },
    (error: Error) => (note.textContent = error.message),
  );
  return () => undefined;
}
