import type { JobStatus } from '../../schemas/job-status.js';
import { ApiError, getJson, sendJson } from './api.js';
import { h, type Cleanup } from './dom.js';
import { showFieldErrors, unionField, type JsonSchema } from './schema-form.js';

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

/** A form whose fields follow the chosen mode, built from the API's own schema; `uploadId` preselects an uploaded dataset. */
export function newJobPage(view: HTMLElement, uploadId?: string): Cleanup {
  const problem = h('div');
  const form = h('form', { class: 'spec', novalidate: true });
  view.replaceChildren(h('h1', {}, 'New job'), h('div', { class: 'card' }, form, problem));
  void jobSpecVariants().then((variants) => {
    const spec = unionField('', 'job', variants, 'mode', false);
    const submit = h('button', { class: 'primary', type: 'submit' }, 'Submit job');
    form.replaceChildren(spec.element, h('div', { class: 'row' }, submit));
    if (uploadId) {
      choose(form, 'mode', 'fine_tuning');
      choose(form, 'dataset.type', 'upload');
      choose(form, 'dataset.id', uploadId);
    }
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
