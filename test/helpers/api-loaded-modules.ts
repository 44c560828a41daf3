// Runs in a fresh process: builds the API, serves a few requests (the summary and preflight ones run
// on the API's worker threads), and prints which CommonJS modules its main thread loaded.
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { testApp } from './app.js';

const scratch = mkdtempSync(path.join(os.tmpdir(), 'retrain-modules-'));
for (const name of ['cats', 'dogs']) mkdirSync(path.join(scratch, 'data', 'pets', name), { recursive: true });
const { app, close } = await testApp('modules', scratch);
const statuses: Record<string, number> = {};
const spec = {
  mode: 'feature_extraction',
  weights: 'random',
  inputSize: 32,
  epochs: 1,
  dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 2, imageSize: 32 },
};
for (const [name, request] of [
  ['summary', { method: 'POST', url: '/v1/summary', payload: spec, headers: { accept: 'text/plain' } }],
  ['preflight', { method: 'POST', url: '/v1/datasets/preflight', payload: { dataset: spec.dataset } }],
  ['folder job', { method: 'POST', url: '/v1/jobs', payload: { ...spec, dataset: { type: 'folder', path: 'pets' } } }],
  ['synthetic job', { method: 'POST', url: '/v1/jobs', payload: spec }],
  ['list', { method: 'GET', url: '/v1/jobs' }],
] as const) {
  statuses[name] = (await app.inject(request)).statusCode;
}
await close();
const loaded = Object.keys(createRequire(import.meta.url).cache);
process.stdout.write(JSON.stringify({ statuses, loaded }));
