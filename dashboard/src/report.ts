import type { Metrics } from '../../schemas/metrics.js';
import type { ModelSummary } from '../../schemas/model.js';
import { imageUrl } from './api.js';
import { h, percent } from './dom.js';

type Report = NonNullable<Metrics['report']>;

/** Rows are true classes, columns predicted; each cell shaded by its share of the row. */
export function confusionMatrix({ confusionMatrix: { classNames, matrix } }: Report): HTMLElement {
  const header = h('tr', {}, h('th', {}, 'true \\ predicted'), ...classNames.map((name) => h('th', {}, name)));
  const rows = matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    return h(
      'tr',
      {},
      h('th', {}, classNames[i]),
      ...row.map((count, j) => {
        const share = count / total;
        const hue = i === j ? '47, 111, 237' : '194, 53, 45';
        const style = `background: rgba(${hue}, ${share.toFixed(3)}); color: ${share > 0.6 ? '#fff' : 'inherit'}`;
        return h('td', { style, title: `${count} of ${total} ${classNames[i]} predicted ${classNames[j]}` }, count);
      }),
    );
  });
  return h('table', { class: 'confusion', 'data-testid': 'confusion-matrix' }, header, ...rows);
}

export function perClassTable({ perClass }: Report): HTMLElement {
  return h(
    'table',
    { 'data-testid': 'per-class' },
    h('tr', {}, h('th', {}, 'class'), ...['precision', 'recall', 'F1', 'support'].map((t) => h('th', { class: 'num' }, t))),
    ...perClass.map((c) =>
      h(
        'tr',
        {},
        h('td', {}, c.className),
        h('td', { class: 'num' }, percent(c.precision)),
        h('td', { class: 'num' }, percent(c.recall)),
        h('td', { class: 'num' }, percent(c.f1)),
        h('td', { class: 'num' }, c.support),
      ),
    ),
  );
}

/** The held-out images the metrics keep, each with its true and predicted class. */
export function validationImages(jobId: string, metrics: Metrics): HTMLElement {
  const grid = h('div', { class: 'thumbs', 'data-testid': 'validation-images' });
  metrics.validationPredictions.forEach((prediction, index) => {
    const predicted = prediction.probabilities.indexOf(Math.max(...prediction.probabilities));
    const right = predicted === prediction.label;
    const img = h('img', { alt: prediction.file });
    void imageUrl(`/v1/jobs/${jobId}/validation-images/${index}`).then(
      (url) => (img.src = url),
      () => (img.alt = 'not available'),
    );
    grid.append(
      h(
        'figure',
        { class: `thumb ${right ? 'right' : 'wrong'}`, title: prediction.file },
        img,
        h('div', {}, `true: ${metrics.classNames[prediction.label] ?? prediction.label}`),
        h('div', {}, `predicted: ${metrics.classNames[predicted] ?? predicted} (${percent(prediction.probabilities[predicted], 0)})`),
      ),
    );
  });
  return grid;
}

const count = (n: number) => n.toLocaleString('en-US');

/** torchinfo's table: module, output shape, parameters, trainable. */
export function summaryTable(summary: ModelSummary): HTMLElement {
  const rows = summary.rows.map((row) =>
    h(
      'tr',
      {},
      h('td', { class: 'mono', style: `padding-left: ${8 + 14 * row.depth}px` }, `${row.type}${row.name ? ` (${row.name})` : ''}`),
      h('td', { class: 'mono' }, `[${row.outputShape.join(', ')}]`),
      h('td', { class: 'num' }, row.showsParams ? count(row.params) : '--'),
      h('td', { class: 'num' }, row.showsParams ? count(row.trainableParams) : '--'),
    ),
  );
  const { totals } = summary;
  return h(
    'div',
    { 'data-testid': 'summary' },
    h(
      'div',
      { class: 'summary-table' },
      h(
        'table',
        {},
        h(
          'tr',
          {},
          h('th', {}, 'layer'),
          h('th', {}, 'output shape'),
          h('th', { class: 'num' }, 'params'),
          h('th', { class: 'num' }, 'trainable'),
        ),
        ...rows,
      ),
    ),
    h(
      'p',
      { class: 'muted' },
      `total ${count(totals.totalParams)} parameters, ${count(totals.trainableParams)} trainable; ${count(totals.multAdds)} mult-adds; about ${totals.estimatedTotalBytes >> 20} MiB to train one image`,
    ),
  );
}
