import type { DatasetRecord } from '../../schemas/dataset.js';
import type { JobList, JobStatus } from '../../schemas/job-status.js';
import type { WeightsVariant } from '../../schemas/weights.js';
import { ApiError, getJson, sendJson } from './api.js';
import { h, type Cleanup } from './dom.js';
import { fieldRow, showFieldErrors, unionField, type CustomFields, type Field, type JsonSchema } from './schema-form.js';

interface OpenApi {
  paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: JsonSchema }> } }>>;
}

/** The job spec as the API documents it: one object schema per transfer mode. */
async function jobSpecVariants(): Promise<JsonSchema[]> {
  const doc = await getJson<OpenApi>('/openapi.json');
  const schema = doc.paths['/v1/jobs']?.post?.requestBody?.content['application/json']?.schema;
  if (!schema?.oneOf) throw new Error('/openapi.json has no job spec for POST /v1/jobs');
  return schema.oneOf;
}

function choose(form: HTMLElement, name: string, value: string): void {
  const input = form.querySelector<HTMLInputElement | HTMLSelectElement>(`[name="${name}"]`);
  if (!input) return;
  input.value = value;
  input.dispatchEvent(new Event('change'));
}

const megabytes = (bytes: number | null) => (bytes ? `${(bytes / 1e6).toFixed(1)} MB` : 'its file');

/**
 * `weights`: the variants the service knows, each saying whether it is in the store or will be fetched
 * when the job starts, seeded random ones, or one of the caller's completed jobs (its best epoch or final model).
 */
function weightsField(variants: WeightsVariant[], jobs: JobStatus[]): CustomFields[string] {
  return (path, label, schema) => {
    const select = h(
      'select',
      { id: `field-${path}`, name: path },
      ...variants.map((v) => h('option', { value: v.name, selected: v.name === 'imagenet' }, v.name)),
      h('option', { value: 'random' }, 'random'),
      ...(jobs.length ? [h('option', { value: 'job' }, 'an earlier job…')] : []),
    );
    const job = h(
      'select',
      { name: 'weights.job', hidden: true },
      ...jobs.map((j) => h('option', { value: j.id }, `${j.mode} ${j.id.slice(0, 8)}`)),
    );
    const checkpoint = h(
      'select',
      { name: 'weights.checkpoint', hidden: true },
      h('option', { value: 'best' }, 'best'),
      h('option', { value: 'final' }, 'final'),
    );
    const note = h('div', { class: 'help', 'data-testid': 'weights-note' });
    const explain = () => {
      const variant = variants.find((v) => v.name === select.value);
      job.hidden = checkpoint.hidden = select.value !== 'job';
      note.textContent = variant
        ? variant.present
          ? `${variant.name}: in the artifact store, ready${variant.top1 ? ` (ImageNet top-1 ${variant.top1}%)` : ''}`
          : `${variant.name}: fetched on first use, once for every worker (${megabytes(variant.bytes)} from ${variant.source ?? 'the manifest'})`
        : select.value === 'job'
          ? "the earlier job's backbone, and its head where the classes match"
          : 'seeded random weights: nothing to fetch';
    };
    select.addEventListener('change', explain);
    explain();
    const input = h('span', { class: 'row' }, select, job, checkpoint);
    const read = () => (select.value === 'job' ? { job: job.value, checkpoint: checkpoint.value } : select.value);
    return { element: fieldRow(path, label, input, schema, note), read } satisfies Field;
  };
}

/** `dataset.id`: the caller's uploads by name (the API wants the id). */
function uploadField(uploads: DatasetRecord[]): CustomFields[string] {
  return (path, label, schema) => {
    const select = h(
      'select',
      { id: `field-${path}`, name: path },
      ...uploads.map((u) => h('option', { value: u.id }, `${u.name} (${u.images} images, ${u.classNames.length} classes)`)),
    );
    const help = uploads.length ? undefined : h('div', { class: 'help' }, h('a', { href: '#/datasets' }, 'Upload a dataset'), ' first.');
    return { element: fieldRow(path, label, select, schema, help), read: () => select.value || undefined };
  };
}

/**
 * A form whose fields follow the chosen mode (fine_tuning first), built from the API's own schema,
 * with pickers where it names things; `uploadId` preselects an uploaded dataset.
 */
export function newJobPage(view: HTMLElement, uploadId?: string): Cleanup {
  const problem = h('div');
  const form = h('form', { class: 'spec', novalidate: true });
  view.replaceChildren(h('h1', {}, 'New job'), h('div', { class: 'card' }, form, problem));
  void Promise.all([
    jobSpecVariants(),
    getJson<{ items: WeightsVariant[] }>('/v1/weights'),
    getJson<{ items: DatasetRecord[] }>('/v1/datasets'),
    getJson<JobList>('/v1/jobs?state=completed&limit=100'),
  ]).then(([variants, weights, uploads, completed]) => {
    const custom: CustomFields = { weights: weightsField(weights.items, completed.items), 'dataset.id': uploadField(uploads.items) };
    const spec = unionField('', 'job', variants, 'mode', false, { custom, initial: 'fine_tuning' });
    const submit = h('button', { class: 'primary', type: 'submit' }, 'Submit job');
    form.replaceChildren(spec.element, h('div', { class: 'row' }, submit));
    choose(form, 'dataset.type', uploadId || uploads.items.length ? 'upload' : 'synthetic');
    if (uploadId) choose(form, 'dataset.id', uploadId);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      submit.disabled = true;
      problem.replaceChildren();
      sendJson<JobStatus>('POST', '/v1/jobs', spec.read())
        .then((status) => (location.hash = `#/jobs/${status.id}`))
        .catch((error: unknown) => {
          const errors = error instanceof ApiError ? (error.problem.errors ?? []) : [];
          const unplaced = showFieldErrors(form, errors);
          problem.replaceChildren(
            h('div', { class: 'problem', role: 'alert' }, (error as Error).message, ...unplaced.map((u) => h('div', {}, u))),
          );
        })
        .finally(() => (submit.disabled = false));
    });
  });
  return () => undefined;
}
