import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');

describe("the API's main thread", () => {
  it('never loads tfjs or sharp, even while serving summaries, preflights and submissions', () => {
    const output = execFileSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/helpers/api-loaded-modules.ts')], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    const { statuses, loaded } = JSON.parse(output) as { statuses: Record<string, number>; loaded: string[] };
    // The requests really ran: summary and preflight on the worker threads, which do load tfjs and sharp.
    assert.deepEqual(statuses, { summary: 200, preflight: 200, 'folder job': 400, 'synthetic job': 202, list: 200 });
    assert.ok(
      loaded.some((file) => file.includes('/node_modules/fastify/')),
      'the module cache is the one the app loaded into',
    );
    assert.deepEqual(
      loaded.filter((file) => /node_modules\/(@tensorflow|sharp|@img)\//.test(file)),
      [],
    );
  });
});
