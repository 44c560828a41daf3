import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { callJson, parseCommand, print } from './client.js';
import { UsageError } from './usage.js';

export const PREDICT_USAGE = `retrain predict JOB_ID IMAGE... [--top-k K]        top-k classes of each image by a completed job's model
       retrain predict --model NAME IMAGE... [--top-k K]  by the model an alias names now
   [--precision int8|bf16|fp32 (unset: the fastest offered)] [--url URL] [--key KEY]`;

export async function predict(argv: string[]): Promise<void> {
  const { service, values, positionals } = parseCommand(argv, {
    'top-k': { type: 'string' },
    model: { type: 'string' },
    precision: { type: 'string' },
  });
  const alias = values.model;
  const jobId = alias ? undefined : positionals[0];
  const images = alias ? positionals : positionals.slice(1);
  if ((!alias && !jobId) || images.length === 0) throw new UsageError('predict needs a job id (or --model NAME) and at least one image');
  const form = new FormData();
  for (const image of images) form.append('image', new Blob([await readFile(image)]), path.basename(image));
  const query = new URLSearchParams();
  if (values['top-k']) query.set('topK', String(values['top-k']));
  if (values.precision) query.set('precision', String(values.precision));
  const target = alias ? `/v1/models/${encodeURIComponent(alias)}` : `/v1/jobs/${jobId}`;
  print(await callJson(service, `${target}/predict${query.size ? `?${query}` : ''}`, { method: 'POST', body: form }));
}
