import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import * as tar from 'tar';
import { seededRandom } from '../../common/random.js';
import { renderSyntheticImage } from '../../engine/data/synthetic.js';
import { parseSafetensors } from '../../engine/model/safetensors.js';
import { ApiKeys } from '../../common/api-keys.js';
import type { Metrics } from '../../schemas/metrics.js';
import type { SweepStatus } from '../../schemas/sweep.js';
import { keyedTestApp } from '../helpers/app.js';
import { launchChromium, newPage, screenshot } from '../helpers/browser.js';
import { writeMessyDataset } from '../helpers/images.js';
import { onnxHeader } from '../helpers/onnx.js';
import { sleep, startService, type TestService } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';

const CLASSES = 3;
const FINISHED = ['completed', 'stopped_early', 'failed', 'cancelled'];
/** Generous bounds so a broken page fails the run instead of hanging it; none of them measures speed. */
const LONG = 600_000;

const stateOf = (page: Page) => page.getAttribute('[data-testid=job-header] [data-state]', 'data-state', { timeout: LONG });

/** Fills the new-job form for a small feature-extraction job (augmented, so the backbone runs at every step) and submits it. */
async function submitFromForm(page: Page, base: string, epochs: number): Promise<string> {
  await page.goto(`${base}/#/jobs/new`);
  await page.selectOption('[name="mode"]', 'feature_extraction');
  await page.selectOption('[name="weights"]', 'random');
  await page.fill('[name="inputSize"]', '32');
  await page.fill('[name="batchSize"]', '8');
  await page.selectOption('[name="dataset.type"]', 'synthetic');
  await page.fill('[name="dataset.numClasses"]', String(CLASSES));
  await page.fill('[name="dataset.imagesPerClass"]', '12');
  await page.fill('[name="dataset.imageSize"]', '32');
  await page.uncheck('[name="augmentation.randomResizedCrop"]');
  await page.fill('[name="epochs"]', String(epochs));
  await page.fill('[name="optimizer.learningRate"]', '0.003');
  await page.click('form.spec button[type=submit]');
  await page.waitForURL(/#\/jobs\/[0-9a-f-]{36}$/, { timeout: LONG });
  return page.url().split('/').pop()!;
}

async function downloaded(page: Page, format: string): Promise<Buffer> {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: LONG }), page.click(`[data-download="${format}"]`)]);
  return readFileSync(await download.path());
}

describe('the dashboard in a real browser', () => {
  let service: TestService;
  let browser: Browser;
  let page: Page;
  let base: string;
  const errors: string[] = [];
  const scratch = tempDir('dashboard');

  before(async () => {
    service = await startService('dashboard', { SWEEP_TICK_MS: '300' });
    await service.startWorker();
    await service.app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}`;
    browser = await launchChromium();
    page = await newPage(browser, errors);
  });
  after(async () => {
    await browser?.close();
    await service.stop();
    assert.deepEqual(errors, [], 'no script errors on any page');
  });

  it('opens the new-job form on fine_tuning, saying whether the chosen weights are in the store or will be fetched', async () => {
    await page.goto(`${base}/#/jobs/new`);
    await page.waitForSelector('[name="weights"]', { timeout: LONG });
    assert.equal(await page.inputValue('[name="mode"]'), 'fine_tuning');
    assert.equal(await page.inputValue('[name="weights"]'), 'imagenet');
    assert.equal(
      await page.textContent('[data-testid=weights-note]'),
      'imagenet: fetched on first use, once for every worker (102.5 MB from https://download.pytorch.org/models/resnet50-0676ba61.pth)',
    );
    await page.selectOption('[name="weights"]', 'random');
    assert.equal(await page.textContent('[data-testid=weights-note]'), 'seeded random weights: nothing to fetch');
    await screenshot(page, 'new-job-form');
  });

  it('shows a field error from the API next to its field, and submits nothing', async () => {
    await page.goto(`${base}/#/jobs/new`);
    await page.selectOption('[name="mode"]', 'feature_extraction');
    await page.selectOption('[name="dataset.type"]', 'synthetic');
    await page.fill('[name="epochs"]', '0');
    await page.click('form.spec button[type=submit]');
    await page.waitForSelector('[role=alert]');
    assert.match((await page.textContent('[data-error-for="epochs"]')) ?? '', />=1|at least|too small/i);
    assert.match(page.url(), /#\/jobs\/new$/);
    await screenshot(page, 'new-job-form-error');
  });

  it('submits a job from the form, draws its curves while it trains, and shows its report when it completes', async () => {
    const id = await submitFromForm(page, base, 6);
    let seenRunning = false;
    for (;;) {
      const state = await stateOf(page);
      const points = Number((await page.getAttribute('[data-testid=charts]', 'data-points', { timeout: LONG })) ?? 0);
      if (state === 'running' && points >= 2) seenRunning = true;
      if (seenRunning || FINISHED.includes(state ?? '')) break;
      await sleep(100);
    }
    assert.ok(seenRunning, 'curve points appeared while the job was running');
    await screenshot(page, 'job-training');
    await page.waitForSelector('[data-testid=job-header] [data-state="completed"]', { timeout: LONG });
    await page.waitForSelector('[data-testid=confusion-matrix]', { timeout: LONG });
    const metrics = (await service.http().get(`/v1/jobs/${id}/metrics`)).body as Metrics;
    assert.equal(await page.getAttribute('[data-testid=charts]', 'data-points'), '6');
    const cells = await page.$$eval('[data-testid=confusion-matrix] td', (tds) => tds.map((td) => Number(td.textContent)));
    assert.equal(cells.length, CLASSES * CLASSES);
    assert.equal(
      cells.reduce((a, b) => a + b, 0),
      metrics.report!.perClass.reduce((a, c) => a + c.support, 0),
    );
    assert.equal(await page.locator('[data-testid=per-class] tr').count(), CLASSES + 1);
    await page.waitForFunction(
      (n) => document.querySelectorAll('[data-testid=validation-images] img[src^="blob:"]').length === n,
      metrics.validationPredictions.length,
      { timeout: LONG },
    );
    await page.waitForSelector('[data-testid=summary] tr >> nth=10', { timeout: LONG });
    await screenshot(page, 'job-completed');
  });

  it('downloads the checkpoint as tar.gz, safetensors and ONNX, and predicts a dropped image', async () => {
    const tarball = await downloaded(page, 'tar.gz');
    assert.deepEqual([...tarball.subarray(0, 2)], [0x1f, 0x8b], 'gzip');
    const weights = parseSafetensors(await downloaded(page, 'safetensors'));
    assert.deepEqual(weights.get('fc.weight')?.shape, [CLASSES, 2048]);
    assert.equal(onnxHeader(await downloaded(page, 'onnx')).opset, 17);

    const image = path.join(scratch, 'photo.png');
    await sharp(renderSyntheticImage(1, CLASSES, 48, seededRandom(4)), { raw: { width: 48, height: 48, channels: 3 } })
      .png()
      .toFile(image);
    await page.setInputFiles('[data-testid=predict-input]', image);
    await page.waitForSelector('[data-testid=prediction]', { timeout: LONG });
    assert.equal(await page.locator('[data-testid=prediction] tr').count(), CLASSES);
    // Unset, the fastest the job offers: int8 where its check passed, else bf16 where the CPU has it.
    const hasBf16 = /\bavx512_bf16\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
    const jobId = /#\/jobs\/([^/?]+)/.exec(page.url())![1];
    const { int8 } = (await service.http().get(`/v1/jobs/${jobId}/metrics`)).body as Metrics;
    const fastest = int8?.offered ? 'int8' : hasBf16 ? 'bf16' : 'fp32';
    assert.equal(await page.textContent('[data-testid=predict-ran]'), `ran in ${fastest}`);
    await page.selectOption('[data-testid=predict-precision]', 'fp32');
    await page.waitForSelector('[data-testid=predict-ran]:text-is("ran in fp32")', { timeout: LONG });
    await page.selectOption('[data-testid=predict-precision]', 'bf16');
    await page.waitForSelector(`[data-testid=predict-ran]:text-is("ran in ${hasBf16 ? 'bf16' : 'fp32'}")`, { timeout: LONG });
    await screenshot(page, 'job-predict');
  });

  it('cancels a running job from its page', async () => {
    const id = await submitFromForm(page, base, 500);
    await page.waitForSelector('[data-testid=job-header] [data-state="running"]', { timeout: LONG });
    await page.click('button.danger');
    await page.waitForSelector('[data-testid=job-header] [data-state="cancelled"]', { timeout: LONG });
    assert.equal((await service.http().get(`/v1/jobs/${id}`)).body.state, 'cancelled');
    await page.goto(`${base}/#/jobs`);
    await page.waitForSelector(`[data-job-id="${id}"] [data-state="cancelled"]`, { timeout: LONG });
    assert.equal(await page.locator('[data-testid=jobs] tbody tr').count(), 2);
    await screenshot(page, 'jobs');
  });

  it('uploads a dataset, shows its preflight report, and starts a job form on it', async () => {
    await writeMessyDataset(path.join(scratch, 'messy', 'pets'));
    const archive = path.join(scratch, 'pets.tar.gz');
    await tar.c({ gzip: true, file: archive, cwd: path.join(scratch, 'messy') }, ['pets']);
    await page.goto(`${base}/#/datasets`);
    await page.setInputFiles('[data-testid=upload-input]', archive);
    await page.waitForSelector('[data-testid=preflight]', { timeout: LONG });
    assert.match((await page.textContent('[data-testid=preflight]')) ?? '', /usable in 2 classes; 4 unusable/);
    const row = page.locator('[data-testid=datasets] tr[data-dataset-id]');
    await row.first().waitFor({ timeout: LONG });
    const datasetId = await row.first().getAttribute('data-dataset-id');
    await screenshot(page, 'datasets');
    await row.first().locator('a', { hasText: 'New job on it' }).click();
    await page.waitForSelector('[name="dataset.id"]', { timeout: LONG });
    assert.equal(await page.inputValue('[name="dataset.type"]'), 'upload');
    assert.equal(await page.inputValue('[name="dataset.id"]'), datasetId);
    const named = await page.locator('[name="dataset.id"] option').allTextContents();
    assert.ok(
      named.some((text) => /^pets\.tar\.gz \(\d+ images, 2 classes\)$/.test(text)),
      `uploads by name: ${named.join('; ')}`,
    );
  });
  let sweep: SweepStatus;

  it('shows a sweep: trials sortable by the objective, the best-so-far curve, parameters against the objective, the promoted trial', async () => {
    const submitted = await service
      .http()
      .post('/v1/sweeps')
      .send({
        name: 'dash sweep',
        tags: ['dashboard'],
        base: {
          mode: 'feature_extraction',
          weights: 'random',
          inputSize: 32,
          batchSize: 8,
          epochs: 2,
          dataset: { type: 'synthetic', numClasses: CLASSES, imagesPerClass: 12, imageSize: 32, seed: 1 },
          augmentation: { randomResizedCrop: false, horizontalFlip: false },
        },
        parameters: { 'optimizer.learningRate': { values: [0.0005, 0.05] }, labelSmoothing: { values: [0, 0.2] } },
        search: { method: 'grid' },
        parallelism: 1,
        promote: 'dash-best',
      });
    assert.equal(submitted.status, 202, submitted.text);
    await page.goto(`${base}/#/sweeps`);
    await page.click(`[data-sweep-id="${submitted.body.id}"] a`);
    await page.waitForSelector('[data-testid=sweep-best][data-promoted=true]', { timeout: LONG });
    sweep = (await service.http().get(`/v1/sweeps/${submitted.body.id}`)).body as SweepStatus;
    assert.equal(sweep.state, 'completed');
    assert.equal(await page.getAttribute('[data-testid=sweep-best]', 'data-trial'), String(sweep.best!.trial));
    assert.equal(await page.getAttribute('[data-testid=trials] tr.best', 'data-trial'), String(sweep.best!.trial));

    const order = () => page.$$eval('[data-testid=trials] tbody tr', (rows) => rows.map((row) => Number(row.getAttribute('data-trial'))));
    const bestFirst = [...sweep.trials].sort((a, b) => b.best!.value - a.best!.value || a.index - b.index).map((t) => t.index);
    assert.deepEqual(await order(), bestFirst, 'sorted by the objective, best first');
    await page.click('[data-testid=trials] th[data-sort=trial]');
    assert.deepEqual(await order(), [0, 1, 2, 3]);
    await page.click('[data-testid=trials] th[data-sort=trial]');
    assert.deepEqual(await order(), [3, 2, 1, 0]);

    assert.equal(await page.getAttribute('[data-testid=best-so-far]', 'data-points'), '4');
    assert.equal(await page.locator('[data-testid=parallel-coordinates] polyline').count(), 4);
    const axes = await page.locator('[data-testid=parallel-coordinates] svg > text').allTextContents();
    for (const axis of ['optimizer.learningRate', 'labelSmoothing', 'validation_accuracy']) assert.ok(axes.includes(axis), `axis ${axis}`);
    await screenshot(page, 'sweep');
  });

  it('compares two trials side by side, marking the spec rows that differ', async () => {
    const [first, last] = [sweep.trials[0], sweep.trials[3]];
    await page.check(`[data-compare="${first.job}"]`);
    await page.check(`[data-compare="${last.job}"]`);
    await page.click('[data-testid=compare]');
    await page.waitForSelector('[data-testid=compare-spec]', { timeout: LONG });
    assert.match(page.url(), new RegExp(`#/compare/${first.job},${last.job}$`));
    const differing = await page.$$eval('[data-testid=compare-spec] tr[data-differs]', (rows) =>
      rows.map((row) => row.getAttribute('data-path')),
    );
    assert.deepEqual(differing.sort(), ['labelSmoothing', 'optimizer.learningRate']);
    const finalAccuracy = await page.$$eval('[data-metric="final val. accuracy"] td', (tds) => tds.map((td) => td.textContent));
    const expected = await Promise.all(
      [first, last].map(
        async (t) => ((await service.http().get(`/v1/jobs/${t.job}/metrics`)).body as Metrics).epochs.at(-1)!.validationAccuracy!,
      ),
    );
    assert.deepEqual(
      finalAccuracy,
      expected.map((v) => `${(100 * v).toFixed(1)}%`),
    );
    assert.equal(await page.locator('[data-testid=compare-charts] canvas').count(), 3);
    await screenshot(page, 'compare');
  });

  it("filters the job list by a sweep's tag, and shows a trial's spec and timings on its page", async () => {
    await page.goto(`${base}/#/jobs`);
    await page.fill('[data-testid=job-filter] [name=tag]', `sweep:${sweep.id}`);
    await page.click('[data-testid=job-filter] button');
    await page.waitForFunction(() => document.querySelector('[data-testid=jobs] + p')?.textContent?.startsWith('4 of 4 jobs'), null, {
      timeout: LONG,
    });
    const listed = await page.$$eval('[data-testid=jobs] tbody tr', (rows) => rows.map((row) => row.getAttribute('data-job-id')));
    assert.deepEqual(listed.sort(), sweep.trials.map((t) => t.job).sort());
    assert.equal(await page.locator('[data-testid=jobs] tbody [data-name="dash sweep"]').count(), 4);
    await screenshot(page, 'jobs-filtered');

    const trial = sweep.trials[1];
    await page.click(`[data-job-id="${trial.job}"] a.mono`);
    await page.waitForSelector('[data-testid=job-spec]', { timeout: LONG });
    const spec = await page.$$eval('[data-testid=job-spec] tr', (rows) =>
      rows.map((row) => [row.children[0].textContent, row.children[1].textContent]),
    );
    assert.deepEqual(
      spec.find(([path]) => path === 'optimizer.learningRate'),
      ['optimizer.learningRate', String(trial.parameters['optimizer.learningRate'])],
    );
    assert.match((await page.textContent('[data-testid=job-timings]')) ?? '', /ran\d+ s|ran\d+ min/);
  });

  it('lists the model alias the sweep promoted, with its history', async () => {
    await page.goto(`${base}/#/models`);
    await page.click('[data-history="dash-best"] summary', { timeout: LONG });
    await page.waitForSelector('[data-history="dash-best"] li', { timeout: LONG });
    assert.match(
      (await page.textContent('[data-alias="dash-best"]')) ?? '',
      new RegExp(`${sweep.best!.job.slice(0, 8)} · ${sweep.best!.epoch}`),
    );
    assert.equal(await page.locator('[data-history="dash-best"] li').count(), 1);
    await screenshot(page, 'models');
  });
});

describe('the dashboard with API keys', () => {
  const ADMIN_API_KEY = 'admin-key-for-the-dashboard-test-0123456789';
  let api: Awaited<ReturnType<typeof keyedTestApp>>;
  let browser: Browser;
  let base: string;
  const errors: string[] = [];
  before(async () => {
    api = await keyedTestApp('dashboard-keys', ADMIN_API_KEY);
    await api.app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(api.app.server.address() as AddressInfo).port}`;
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await api.close();
    assert.deepEqual(errors, []);
  });

  it("asks for a key when the API answers 401, then works with the owner's key", async () => {
    const owner = await new ApiKeys(api.redis, api.config.QUEUE_PREFIX).create('alice');
    const page = await newPage(browser, errors);
    await page.goto(`${base}/#/jobs`);
    await page.waitForSelector('#key-form:not([hidden])', { timeout: LONG });
    assert.match((await page.textContent('[data-testid=jobs] + p')) ?? '', /API key/);
    await page.fill('#api-key', owner.key);
    await page.click('#key-form button');
    await page.waitForSelector('text=No jobs yet', { timeout: LONG });
  });

  it('opens the queue admin with the admin key as the Basic password, under a Content-Security-Policy it keeps to', async () => {
    const context = await browser.newContext({ httpCredentials: { username: 'ops', password: ADMIN_API_KEY } });
    const page = await context.newPage();
    page.on('pageerror', (error) => errors.push(error.message));
    // What its Content-Security-Policy refuses, Chromium reports on the console.
    const refused: string[] = [];
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) refused.push(message.text());
    });
    const response = await page.goto(`${base}/admin/queues`);
    assert.match(String(response?.headers()['content-security-policy']), /script-src 'self'/);
    await page.waitForSelector('text=training', { timeout: LONG });
    assert.deepEqual(refused, []);
    await screenshot(page, 'queue-admin');
    await context.close();
  });
});
