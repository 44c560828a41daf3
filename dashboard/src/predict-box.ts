import type { PredictResponse } from '../../schemas/predict.js';
import { request } from './api.js';
import { h, percent } from './dom.js';

function results(response: PredictResponse): HTMLElement[] {
  return response.predictions.map((prediction) =>
    h(
      'div',
      { class: 'card', 'data-testid': 'prediction' },
      h('h2', {}, prediction.file),
      h(
        'table',
        {},
        ...prediction.top.map((t) =>
          h(
            'tr',
            {},
            h('td', { style: 'width: 30%' }, t.className),
            h('td', {}, h('div', { class: 'bar', style: `width: ${(100 * t.probability).toFixed(1)}%` })),
            h('td', { class: 'num', style: 'width: 80px' }, percent(t.probability)),
          ),
        ),
      ),
    ),
  );
}

/** Drop images (or pick them) and see the final model's top-5 classes for each, in the precision picked. */
export function predictBox(jobId: string): HTMLElement {
  const output = h('div', { class: 'grid' });
  const precision = h(
    'select',
    { 'aria-label': 'precision', 'data-testid': 'predict-precision' },
    h('option', { value: '' }, 'fastest offered'),
    h('option', { value: 'int8' }, 'int8 (where the job offers it)'),
    h('option', { value: 'bf16' }, 'bf16 (where the CPU has it)'),
    h('option', { value: 'fp32' }, 'fp32'),
  );
  const ran = h('span', { class: 'muted', 'data-testid': 'predict-ran' });
  const input = h('input', { type: 'file', accept: 'image/*', multiple: true, 'data-testid': 'predict-input' });
  const zone = h('div', { class: 'drop' }, 'Drop images here, or ', input);
  let lastFiles: File[] = [];
  const predict = async (files: File[]) => {
    if (files.length === 0) return;
    lastFiles = files;
    const form = new FormData();
    for (const file of files) form.append('images', file, file.name);
    output.replaceChildren(h('p', { class: 'muted' }, `predicting ${files.length} image(s)…`));
    try {
      const asked = precision.value ? `&precision=${precision.value}` : '';
      const response = await request(`/v1/jobs/${jobId}/predict?topK=5${asked}`, { method: 'POST', body: form });
      const body = (await response.json()) as PredictResponse;
      ran.textContent = `ran in ${body.precision}`;
      output.replaceChildren(...results(body));
    } catch (error) {
      output.replaceChildren(h('div', { class: 'problem', role: 'alert' }, (error as Error).message));
    }
  };
  input.addEventListener('change', () => void predict([...(input.files ?? [])]));
  // Another precision answers for the same images, so the two can be compared.
  precision.addEventListener('change', () => void predict(lastFiles));
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    void predict([...(event.dataTransfer?.files ?? [])]);
  });
  return h(
    'div',
    { class: 'card', 'data-testid': 'predict' },
    h('div', { class: 'row' }, h('h2', {}, 'Predict'), precision, ran),
    zone,
    output,
  );
}
