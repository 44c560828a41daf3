import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { startService, type TestService } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';

const BIN = path.resolve(import.meta.dirname, '../../bin/retrain.mjs');

describe('the retrain CLI against a running service', () => {
  let service: TestService;
  let scratch: string;
  /** Runs the CLI in a process of its own (asynchronously: the API answers from this process). */
  let retrain: (...args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;
  before(async () => {
    service = await startService('cli');
    await service.startWorker();
    await service.app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}`;
    scratch = tempDir('cli-service');
    retrain = async (...args) => {
      try {
        const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], {
          env: { ...process.env, RETRAIN_URL: url },
          cwd: scratch,
          maxBuffer: 16 * 1024 * 1024,
        });
        return { code: 0, stdout, stderr };
      } catch (error) {
        const failed = error as { code: number; stdout: string; stderr: string };
        return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
      }
    };
  });
  after(async () => {
    await service.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('uploads a folder, submits and follows a job to its end, lists, downloads and predicts with it', async () => {
    const photos = path.join(scratch, 'photos');
    for (const [label, colour] of [
      ['red', '#c03020'],
      ['blue', '#2040c0'],
    ]) {
      mkdirSync(path.join(photos, label), { recursive: true });
      for (let i = 0; i < 6; i++) {
        const noise = { type: 'gaussian' as const, mean: 0, sigma: 20 };
        await sharp({ create: { width: 40, height: 40, channels: 3, background: colour, noise } })
          .png()
          .toFile(path.join(photos, label, `${i}.png`));
      }
    }
    const uploaded = await retrain('datasets', 'upload', photos);
    assert.equal(uploaded.code, 0, uploaded.stderr);
    const dataset = JSON.parse(uploaded.stdout) as { id: string; images: number; name: string };
    assert.deepEqual([dataset.images, dataset.name], [12, 'photos']);

    const spec = path.join(scratch, 'spec.json');
    writeFileSync(
      spec,
      JSON.stringify({
        mode: 'fine_tuning',
        weights: 'random',
        inputSize: 32,
        epochs: 2,
        batchSize: 4,
        augmentation: { randomResizedCrop: false, horizontalFlip: false },
        dataset: { type: 'upload', id: dataset.id },
        tags: ['cli'],
      }),
    );
    const watched = await retrain('jobs', 'submit', spec, '--watch');
    assert.equal(watched.code, 0, watched.stderr);
    const outcome = JSON.parse(watched.stdout) as { id: string; state: string; evaluation: { images: number } };
    assert.equal(outcome.state, 'completed');
    assert.match(watched.stderr, /^training epoch 1\/2 step \d+\/\d+ [\d.]+%/m, 'progress lines from the event stream');
    const progress = watched.stderr
      .split('\n')
      .filter((line) => /^\w+ epoch \d+\/\d+ step /.test(line))
      .map((line) => line.replace(/ ETA \d+ s$/, ''));
    assert.ok(
      progress.every((line, i) => i === 0 || line !== progress[i - 1]),
      `a line only when more than the estimate moved:\n${progress.join('\n')}`,
    );
    assert.match(watched.stderr, /^epoch 1: \{/m);
    assert.match(watched.stderr, /^epoch 2: \{/m);

    const listed = await retrain('jobs', 'list', '--tag', 'cli');
    assert.deepEqual(
      (JSON.parse(listed.stdout) as { items: Array<{ id: string }> }).items.map((job) => job.id),
      [outcome.id],
    );
    assert.deepEqual(JSON.parse((await retrain('jobs', 'list', '--tag', 'other')).stdout).items, []);
    const fetched = await retrain('jobs', 'download', outcome.id, '--format', 'safetensors', '--output', 'model.safetensors');
    assert.equal(fetched.code, 0, fetched.stderr);
    assert.ok(statSync(path.join(scratch, 'model.safetensors')).size > 90e6);
    const predicted = await retrain(
      'predict',
      outcome.id,
      path.join(photos, 'red', '0.png'),
      path.join(photos, 'blue', '0.png'),
      '--top-k',
      '2',
    );
    assert.equal(predicted.code, 0, predicted.stderr);
    const { predictions } = JSON.parse(predicted.stdout) as { predictions: Array<{ file: string; top: unknown[] }> };
    assert.deepEqual(
      predictions.map((p) => [p.file, p.top.length]),
      [
        ['0.png', 2],
        ['0.png', 2],
      ],
    );
    const aliased = await retrain('models', 'set', 'colours', outcome.id);
    assert.equal(aliased.code, 0, aliased.stderr);
    const viaAlias = await retrain(
      'predict',
      '--model',
      'colours',
      path.join(photos, 'red', '0.png'),
      path.join(photos, 'blue', '0.png'),
      '--top-k',
      '2',
    );
    assert.equal(viaAlias.code, 0, viaAlias.stderr);
    assert.deepEqual(JSON.parse(viaAlias.stdout), JSON.parse(predicted.stdout), 'the alias answers as the job');
  });

  it('submits a sweep and follows it to its end', async () => {
    const sweepFile = path.join(scratch, 'sweep.json');
    const base = {
      mode: 'feature_extraction',
      weights: 'random',
      inputSize: 32,
      epochs: 1,
      dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 6, imageSize: 32 },
    };
    writeFileSync(sweepFile, JSON.stringify({ base, parameters: { labelSmoothing: { values: [0, 0.1] } }, search: { method: 'grid' } }));
    const watched = await retrain('sweeps', 'submit', sweepFile, '--watch');
    assert.equal(watched.code, 0, watched.stderr);
    const sweep = JSON.parse(watched.stdout) as { state: string; trials: unknown[]; best: { job: string } | null };
    assert.equal(sweep.state, 'completed');
    assert.equal(sweep.trials.length, 2);
    assert.ok(sweep.best);
    assert.match(watched.stderr, /^completed 2\/2 trials ended/m);
    const listed = JSON.parse((await retrain('sweeps', 'list')).stdout) as { total: number };
    assert.equal(listed.total, 1);
  });

  it('says what the service answered, or that it cannot be reached, with exit code 1; a bad command line is 2', async () => {
    const missing = await retrain('jobs', 'get', '3b241101-e2bb-4255-8caf-4136c566a962');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /404 no job with id 3b241101/);
    const unreachable = await retrain('jobs', 'list', '--url', 'http://127.0.0.1:9');
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /cannot reach http:\/\/127\.0\.0\.1:9/);
    const wrong = await retrain('jobs', 'frobnicate');
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /unknown jobs action frobnicate/);
  });
});
