import type { SseMessage } from '../../common/sse.js';
import type { JobStatus } from '../../schemas/job-status.js';
import type { EpochMetrics, Metrics } from '../../schemas/metrics.js';
import type { ModelSummary } from '../../schemas/model.js';
import { getJson, jobEvents, saveDownload, sendJson } from './api.js';
import { TrainingCharts } from './charts.js';
import { badge, FINISHED, h, type Cleanup } from './dom.js';
import { labels, progressCell } from './jobs-page.js';
import { predictBox } from './predict-box.js';
import { confusionMatrix, perClassTable, summaryTable, validationImages } from './report.js';
import { specAndTimings } from './spec-view.js';

const RECONNECT_MS = 2000;

function downloads(status: JobStatus, message: HTMLElement): HTMLElement {
  const which = h('select', { 'aria-label': 'checkpoint' }, ...['final', 'best', 'latest'].map((v) => h('option', { value: v }, v)));
  const button = (format: string, label: string) =>
    h(
      'button',
      {
        'data-download': format,
        onclick: () => {
          message.textContent = `preparing ${label}…`;
          saveDownload(`/v1/jobs/${status.id}/checkpoint?epoch=${which.value}&format=${format}`, () => {
            message.textContent = `converting to ${label} (the first download of this format)…`;
          }).then(
            (name) => (message.textContent = `saved ${name}`),
            (error: Error) => (message.textContent = error.message),
          );
        },
      },
      label,
    );
  return h(
    'span',
    { class: 'row', style: 'gap: 6px' },
    'Download',
    which,
    button('tar.gz', 'tfjs (tar.gz)'),
    button('safetensors', 'safetensors'),
    button('onnx', 'ONNX'),
  );
}

function header(status: JobStatus, onCancel: () => void): HTMLElement[] {
  const { progress, backend } = status;
  const message = h('span', { class: 'muted', 'data-testid': 'download-message' });
  const facts = [
    progress.etaSeconds !== null && !FINISHED.has(status.state) ? `ETA ${progress.etaSeconds} s` : '',
    progress.imagesPerSecond !== null ? `${progress.imagesPerSecond} images/s` : '',
    backend ? `${backend.backend} (${backend.kernels})` : '',
  ].filter(Boolean);
  const open = status.state === 'queued' || status.state === 'running';
  const parts: Array<HTMLElement | null> = [
    h(
      'div',
      { class: 'row' },
      badge(status.state),
      h('strong', {}, status.mode),
      labels(status),
      progressCell(status),
      h('span', { class: 'muted' }, facts.join(' · ')),
    ),
    status.failure ? h('div', { class: 'problem' }, status.failure.reason) : null,
    h(
      'div',
      { class: 'row', style: 'margin-top: 10px' },
      h('button', { class: 'danger', disabled: !open, onclick: onCancel }, status.cancelRequested ? 'Cancelling…' : 'Cancel'),
      downloads(status, message),
      message,
    ),
  ];
  return parts.filter((e): e is HTMLElement => e !== null);
}

function results(status: JobStatus, metrics: Metrics): HTMLElement[] {
  const parts: HTMLElement[] = [];
  if (metrics.evaluation) {
    const { accuracy, top5Accuracy, images, split } = metrics.evaluation;
    const score = (v: number | null) => (v === null ? '–' : `${(100 * v).toFixed(1)}%`);
    parts.push(
      h(
        'div',
        { class: 'card' },
        h('h2', {}, 'Evaluation'),
        `${split}: ${images} images, accuracy ${score(accuracy)}, top-5 ${score(top5Accuracy)}`,
      ),
    );
  }
  if (metrics.report) {
    parts.push(
      h(
        'div',
        { class: 'grid' },
        h('div', { class: 'card' }, h('h2', {}, 'Confusion matrix'), confusionMatrix(metrics.report)),
        h('div', { class: 'card' }, h('h2', {}, 'Per class'), perClassTable(metrics.report)),
      ),
    );
  }
  if (metrics.validationPredictions.length)
    parts.push(h('div', { class: 'card' }, h('h2', {}, 'Validation images'), validationImages(status.id, metrics)));
  if (status.state === 'completed' || status.state === 'stopped_early') parts.push(predictBox(status.id));
  return parts;
}

/** Shows the model summary once there is one: the worker writes it as the job starts. */
function summaryLoader(id: string, slot: HTMLElement): (state: JobStatus['state']) => void {
  let requested = false;
  return (state) => {
    if (requested || state === 'queued') return;
    requested = true;
    getJson<ModelSummary>(`/v1/jobs/${id}/summary?depth=2`).then(
      (summary) => slot.replaceChildren(h('h2', {}, 'Model summary'), summaryTable(summary)),
      (error: Error) => {
        requested = false;
        slot.replaceChildren(h('h2', {}, 'Model summary'), h('p', { class: 'muted' }, error.message));
      },
    );
  };
}

/** A job's page: state and progress, live curves over its event stream, and once it ends its report, downloads and a predict box. */
export function jobPage(view: HTMLElement, id: string): Cleanup {
  const controller = new AbortController();
  const top = h('div', { class: 'card', 'data-testid': 'job-header' });
  const chartsSlot = h('div');
  const resultsSlot = h('div');
  const detailsSlot = h('div');
  const summarySlot = h('div', { class: 'card' }, h('h2', {}, 'Model summary'));
  view.replaceChildren(h('h1', {}, 'Job ', h('span', { class: 'mono' }, id)), top, chartsSlot, resultsSlot, detailsSlot, summarySlot);
  let status: JobStatus | null = null;
  let charts: TrainingCharts | null = null;
  const showSummary = summaryLoader(id, summarySlot);
  const render = () => status && top.replaceChildren(...header(status, cancel));
  const cancel = () => void sendJson<JobStatus>('DELETE', `/v1/jobs/${id}`).then((s) => ((status = s), render()));
  const refresh = async () => {
    status = await getJson<JobStatus>(`/v1/jobs/${id}`);
    render();
    const metrics = await getJson<Metrics>(`/v1/jobs/${id}/metrics`);
    if (!charts) chartsSlot.replaceChildren((charts = new TrainingCharts(metrics.epochs)).element);
    else metrics.epochs.forEach((e) => charts?.add(e));
    resultsSlot.replaceChildren(...results(status, metrics));
    detailsSlot.replaceChildren(specAndTimings(status));
    showSummary(status.state);
  };
  const onEvent = ({ event, data }: SseMessage) => {
    if (!status) return;
    if (event === 'status') status = data as JobStatus;
    if (event === 'progress') status = { ...status, progress: { ...status.progress, ...(data as JobStatus['progress']) } };
    if (event === 'state') status = { ...status, state: (data as { state: JobStatus['state'] }).state };
    if (event === 'epoch') charts?.add(data as EpochMetrics);
    render();
    showSummary(status.state);
  };
  const follow = async () => {
    let lastId: string | null = null;
    while (!controller.signal.aborted && status && !FINISHED.has(status.state)) {
      let broken = false;
      try {
        for await (const message of jobEvents(id, controller.signal, lastId)) {
          lastId = message.id ?? lastId;
          onEvent(message);
        }
      } catch {
        if (controller.signal.aborted) return;
        broken = true;
      }
      // The stream ends when the job does: then the report is ready. A broken one is joined again where it left off.
      if (broken) await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
      await refresh().catch(() => undefined);
    }
  };
  refresh()
    .then(follow)
    .catch((error: Error) => top.replaceChildren(h('div', { class: 'problem', role: 'alert' }, error.message)));
  return () => {
    controller.abort();
    charts?.destroy();
  };
}
