import { apiKey, setApiKey } from './api.js';
import { comparePage } from './compare-page.js';
import { datasetsPage } from './datasets-page.js';
import type { Cleanup } from './dom.js';
import { jobPage } from './job-page.js';
import { jobsPage } from './jobs-page.js';
import { modelsPage } from './models-page.js';
import { newJobPage } from './new-job-page.js';
import { sweepPage, sweepsPage } from './sweeps-page.js';

const view = document.getElementById('view') as HTMLElement;
let leave: Cleanup = () => undefined;

/**
 * Hash routes: #/jobs[?name=&tag=&mode=&state=], #/jobs/new, #/jobs/new/upload/<dataset id>, #/jobs/<id>,
 * #/compare/<id>,<id>[,...], #/sweeps, #/sweeps/<id>, #/models, #/datasets.
 */
function route(): void {
  leave();
  const [path = '', search = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === 'datasets') leave = datasetsPage(view);
  else if (parts[0] === 'models') leave = modelsPage(view);
  else if (parts[0] === 'sweeps') leave = parts[1] ? sweepPage(view, parts[1]) : sweepsPage(view);
  else if (parts[0] === 'compare' && parts[1]) leave = comparePage(view, parts[1].split(','));
  else if (parts[0] === 'jobs' && parts[1] === 'new') leave = newJobPage(view, parts[2] === 'upload' ? parts[3] : undefined);
  else if (parts[0] === 'jobs' && parts[1]) leave = jobPage(view, parts[1]);
  else leave = jobsPage(view, new URLSearchParams(search));
}

/** The key box shows when the service asks for a key (API keys on); the key lives for this tab's session. */
function keyForm(): void {
  const form = document.getElementById('key-form') as HTMLFormElement;
  const input = document.getElementById('api-key') as HTMLInputElement;
  input.value = apiKey();
  form.hidden = !apiKey();
  window.addEventListener('retrain:unauthorized', () => (form.hidden = false));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    route();
  });
}

keyForm();
window.addEventListener('hashchange', route);
route();
