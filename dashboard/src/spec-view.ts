import type { JobStatus } from '../../schemas/job-status.js';
import { duration, h, when } from './dom.js';

/** A spec as dotted paths to leaf values (`optimizer.learningRate: 0.001`), lists kept whole. */
export function flatten(value: unknown, prefix = ''): Map<string, string> {
  const leaves = new Map<string, string>();
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, child] of Object.entries(value)) {
      for (const [path, leaf] of flatten(child, prefix ? `${prefix}.${key}` : key)) leaves.set(path, leaf);
    }
  } else if (prefix) {
    leaves.set(prefix, JSON.stringify(value));
  }
  return leaves;
}

/** A job's spec as path/value rows, and when it was queued, started and ended. */
export function specAndTimings(status: JobStatus): HTMLElement {
  const rows = [...flatten(status.spec)].sort(([a], [b]) => a.localeCompare(b));
  const timings: Array<[string, string]> = [
    ['submitted', when(status.createdAt)],
    ['started', when(status.startedAt)],
    ['finished', when(status.finishedAt)],
    ['waited in the queue', duration(status.createdAt, status.startedAt)],
    ['ran', duration(status.startedAt, status.finishedAt)],
    ['attempts', String(status.attempts)],
  ];
  const table = (testId: string, pairs: Array<[string, string]>) =>
    h(
      'table',
      { class: 'keys', 'data-testid': testId },
      ...pairs.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', { class: 'mono' }, v))),
    );
  return h(
    'div',
    { class: 'grid' },
    h('div', { class: 'card' }, h('h2', {}, 'Spec'), table('job-spec', rows)),
    h('div', { class: 'card' }, h('h2', {}, 'Timings'), table('job-timings', timings)),
  );
}
