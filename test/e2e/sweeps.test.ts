import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import supertest from 'supertest';
import { ashaStops, scoreOf } from '../../common/sweep-trials.js';
import type { JobStatus } from '../../schemas/job-status.js';
import type { Metrics } from '../../schemas/metrics.js';
import { SweepSpec, type SweepStatus } from '../../schemas/sweep.js';
import { suggest } from '../../services/sweeps/search.js';
import { testApp } from '../helpers/app.js';
import { sleep, startService, type TestService, type WorkerProcess, downloadWhenMade } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';

const base = {
  mode: 'feature_extraction',
  weights: 'random',
  inputSize: 32,
  batchSize: 8,
  dataset: { type: 'synthetic', numClasses: 3, imagesPerClass: 12, imageSize: 32, seed: 1 },
  augmentation: { randomResizedCrop: false, horizontalFlip: false },
};

type Agent = ReturnType<typeof supertest.agent>;

async function sweepUntil(http: () => Agent, id: string, done: (s: SweepStatus) => boolean, intervalMs = 300): Promise<SweepStatus> {
  const timeoutMs = 600_000;
  const deadline = Date.now() + timeoutMs;
  let last: SweepStatus | undefined;
  while (Date.now() < deadline) {
    const response = await http().get(`/v1/sweeps/${id}`);
    assert.equal(response.status, 200, response.text);
    last = response.body as SweepStatus;
    if (done(last)) return last;
    await sleep(intervalMs);
  }
  throw new Error(`sweep ${id} did not get there; last: ${JSON.stringify(last)}`);
}

async function submit(http: () => Agent, spec: object): Promise<SweepStatus> {
  const response = await http().post('/v1/sweeps').send(spec);
  assert.equal(response.status, 202, response.text);
  assert.equal(response.headers.location, `/v1/sweeps/${response.body.id}`);
  return response.body as SweepStatus;
}

/** The best trial recomputed from every trial's objective per epoch (the first of equals). */
type Best = { trial: number; value: number; epoch: number };
function recomputedBest(sweep: SweepStatus): Best {
  let best: Best | null = null as Best | null;
  for (const trial of sweep.trials)
    trial.epochs.forEach((value, i) => {
      if (value !== null && (!best || scoreOf(value, sweep.spec.objective) > scoreOf(best.value, sweep.spec.objective)))
        best = { trial: trial.index, value, epoch: i + 1 };
    });
  assert.ok(best, 'some trial has an objective');
  return best;
}

describe('sweeps on two real workers', () => {
  let service: TestService;
  let workers: WorkerProcess[];
  before(async () => {
    service = await startService('sweeps', { SWEEP_TICK_MS: '300' });
    workers = await Promise.all([service.startWorker(), service.startWorker()]);
  });
  after(() => service.stop());

  it('runs a grid of 4 trials to the end and promotes the best', async () => {
    const parameters = { 'optimizer.learningRate': { values: [0.001, 0.05] }, labelSmoothing: { values: [0, 0.2] } };
    const created = await submit(service.http, {
      name: 'grid',
      tags: ['e2e'],
      base: { ...base, epochs: 2 },
      parameters,
      search: { method: 'grid' },
      promote: 'grid-best',
    });
    assert.equal(created.totalTrials, 4);
    const sweep = await sweepUntil(service.http, created.id, (s) => s.state !== 'running');
    assert.equal(sweep.state, 'completed');
    assert.deepEqual(
      sweep.trials.map((t) => [t.index, t.state, t.parameters['optimizer.learningRate'], t.parameters.labelSmoothing, t.epochs.length]),
      [
        [0, 'completed', 0.001, 0, 2],
        [1, 'completed', 0.001, 0.2, 2],
        [2, 'completed', 0.05, 0, 2],
        [3, 'completed', 0.05, 0.2, 2],
      ],
    );
    const best = recomputedBest(sweep);
    assert.deepEqual(sweep.best, { ...best, job: sweep.trials[best.trial].job });
    // A trial is an ordinary job: its status, metrics and best checkpoint.
    const job = (await service.http().get(`/v1/jobs/${sweep.best.job}`)).body as JobStatus;
    assert.equal(job.state, 'completed');
    assert.deepEqual((job.spec as { tags?: string[] }).tags, ['e2e', `sweep:${sweep.id}`]);
    const metrics = (await service.http().get(`/v1/jobs/${sweep.best.job}/metrics`)).body;
    assert.equal(metrics.epochs[sweep.best.epoch - 1].validationAccuracy, sweep.best.value);
    assert.ok(sweep.best);
    assert.equal(metrics.bestEpoch, sweep.best.epoch, "the trial keeps its best epoch by the sweep's objective");
    const promoted = sweep.best;
    const download = await downloadWhenMade(() => service.http().get(`/v1/jobs/${promoted.job}/checkpoint?epoch=${promoted.epoch}`));
    assert.equal(download.response.status, 200);
    // Promoted: the alias points at the best trial's best epoch.
    const alias = (await service.http().get('/v1/models/grid-best')).body as { job: string; checkpoint: number };
    assert.deepEqual([alias.job, alias.checkpoint], [sweep.best.job, sweep.best.epoch]);
    // Every trial trained on the same data: one digest, in each status and metrics.
    const statuses = await Promise.all(sweep.trials.map(async (t) => (await service.http().get(`/v1/jobs/${t.job}`)).body as JobStatus));
    const digests = new Set(statuses.map((s) => s.dataset?.digest));
    assert.equal(digests.size, 1);
    assert.match([...digests][0] ?? '', /^[0-9a-f]{64}$/);
    assert.deepEqual(metrics.dataset, { spec: { ...base.dataset, type: 'synthetic' }, digest: [...digests][0] });
    // Its log: the worker's lines for it, as JSON and as an event stream that ends with the job.
    const log = (await service.http().get(`/v1/jobs/${sweep.best.job}/logs`)).body as { lines: string[]; total: number };
    assert.equal(log.total, log.lines.length);
    assert.match(log.lines[0], /attempt 1 on .* backend/);
    assert.deepEqual(
      log.lines.filter((line) => /^epoch \d\/2 /.test(line)).map((line) => /^epoch (\d)\/2 /.exec(line)?.[1]),
      ['1', '2'],
    );
    const followed = await service
      .http()
      .get(`/v1/jobs/${sweep.best.job}/logs?follow=1`)
      .buffer(true)
      .parse((response, done) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString()));
        response.on('end', () => done(null, text));
      });
    const streamed = [...String(followed.body).matchAll(/^event: (\w+)\ndata: (.*)$/gm)].map(([, event, data]) =>
      event === 'line' ? (JSON.parse(data) as { line: string }).line : event,
    );
    assert.deepEqual(streamed, [...log.lines, 'end']);
    const byName = (await service.http().get('/v1/sweeps?name=grid')).body as { items: Array<{ id: string }>; total: number };
    assert.deepEqual([byName.total, byName.items.map((item) => item.id)], [1, [sweep.id]]);
    assert.equal((await service.http().get('/v1/sweeps?tag=e2e&name=grid')).body.total, 1);
    assert.equal((await service.http().get('/v1/sweeps?tag=nothing')).body.total, 0);
  });

  it("stops trials early with ASHA in two brackets, as a recomputation from the rungs decides, and draws the seed's trials", async () => {
    const spec = {
      base,
      parameters: { 'optimizer.learningRate': { distribution: 'log_uniform', min: 1e-4, max: 1 } },
      search: { method: 'random', trials: 6, seed: 7 },
      earlyStopping: { type: 'asha', minEpochs: 1, reductionFactor: 2, maxEpochs: 4, brackets: 2 },
      parallelism: 2,
    };
    const created = await submit(service.http, spec);
    const sweep = await sweepUntil(service.http, created.id, (s) => s.state !== 'running');
    assert.equal(sweep.state, 'completed');
    assert.equal(sweep.trials.length, 6);
    const parsed = SweepSpec.parse(spec);
    for (const trial of sweep.trials) assert.deepEqual(trial.parameters, suggest(parsed, trial.index, []), 'the seed decides the trials');
    assert.deepEqual(
      sweep.rungs.map((r) => [r.bracket, r.epoch]),
      [
        [0, 1],
        [0, 2],
        [1, 2],
      ],
    );
    for (const { bracket, arrivals } of sweep.rungs)
      for (const arrival of arrivals) assert.equal(arrival.trial % 2, bracket, 'trial i is judged in bracket i mod 2 only');
    for (const trial of sweep.trials) {
      // Recompute each decision from the rung's arrivals in order.
      const decisions = sweep.rungs.flatMap(({ epoch, arrivals }) => {
        const place = arrivals.findIndex((a) => a.trial === trial.index) + 1;
        return place ? [{ epoch, stop: ashaStops(arrivals, place, 2, parsed.objective) }] : [];
      });
      for (const rung of trial.rungs)
        assert.equal(rung.value, Math.max(...trial.epochs.slice(0, rung.epoch).map(Number)), 'judged by its best up to the rung');
      const stoppedAt = decisions.find((d) => d.stop)?.epoch;
      assert.equal(trial.state, stoppedAt ? 'stopped_early' : 'completed', `trial ${trial.index}: ${JSON.stringify(trial)}`);
      assert.equal(trial.epochs.length, stoppedAt ?? 4, `trial ${trial.index} trained to its stop`);
      assert.deepEqual(
        trial.rungs.map((r) => r.decision === 'stop'),
        decisions.map((d) => d.stop),
      );
    }
    const stopped = sweep.trials.filter((t) => t.state === 'stopped_early');
    assert.ok(stopped.length >= 1, 'at least one trial stopped early');
    const job = (await service.http().get(`/v1/jobs/${stopped[0].job}`)).body as JobStatus;
    assert.equal(job.result?.stoppedEarlyAfterEpoch, stopped[0].epochs.length);
    const { int8 } = (await service.http().get(`/v1/jobs/${stopped[0].job}/metrics`)).body as Metrics;
    assert.match(int8?.reason ?? '', /ASHA stopped it early/, 'a pruned trial is not quantised');
    assert.equal(
      (await downloadWhenMade(() => service.http().get(`/v1/jobs/${stopped[0].job}/checkpoint?epoch=latest`))).response.status,
      200,
      'its checkpoints are kept',
    );
    assert.deepEqual(sweep.best, { ...recomputedBest(sweep), job: sweep.trials[recomputedBest(sweep).trial].job });
  });

  it('loses and repeats no trial when a worker is killed and the API restarts mid-sweep', async () => {
    const parameters = { 'optimizer.learningRate': { values: [0.001, 0.01, 0.05, 0.1] } };
    const created = await submit(service.http, { base: { ...base, epochs: 4 }, parameters, search: { method: 'grid' }, parallelism: 2 });
    const midway = (s: SweepStatus) => s.trials.find((t) => t.state === 'running' && t.epochs.length >= 1 && t.epochs.length < 4);
    // Polled fast: a trial's epochs take about a second here; an ended sweep fails the test at once.
    const trial = midway(await sweepUntil(service.http, created.id, (s) => Boolean(midway(s)) || s.state !== 'running', 50));
    assert.ok(trial, 'a trial was caught mid-way');
    // The worker training it dies: its job stalls and the other worker resumes it. Which worker holds
    // it: the parent of the training child whose pid the job's log names.
    const logs = (await service.http().get(`/v1/jobs/${trial.job}/logs`)).body as { lines: string[] };
    const child = Number(/ \(pid (\d+)\)/.exec([...logs.lines].reverse().find((line) => line.startsWith('attempt')) ?? '')?.[1]);
    const parent = Number(readFileSync(`/proc/${child}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
    const holder = workers.find((worker) => worker.child.pid === parent);
    assert.ok(holder, `the worker with pid ${parent} holds trial ${trial.index}`);
    await holder.kill();
    await service.startWorker();
    // Another API process takes over, and the first one goes.
    const scratch = tempDir('sweeps-api');
    const second = await testApp('sweeps', scratch, service.env);
    await service.app.close();
    const http = () => supertest.agent(second.app.server);
    const sweep = await sweepUntil(http, created.id, (s) => s.state !== 'running');
    const jobs = (await http().get('/v1/jobs?limit=100')).body.items as JobStatus[];
    const trialJobs = jobs.filter((job) => (job.spec as { tags?: string[] }).tags?.includes(`sweep:${created.id}`));
    const failures = trialJobs.filter((job) => job.failure).map((job) => `${job.id}: ${job.failure?.reason}`);
    assert.equal(sweep.state, 'completed', failures.join('; '));
    assert.deepEqual(
      sweep.trials.map((t) => [t.index, t.state, t.epochs.length]),
      [0, 1, 2, 3].map((i) => [i, 'completed', 4]),
      failures.join('; '),
    );
    assert.equal(trialJobs.length, 4, 'one job per trial');
    assert.equal(trialJobs.filter((job) => job.result?.resumedFromEpoch).length, 1, 'the killed trial resumed from its checkpoint');
    assert.deepEqual(new Set(trialJobs.map((job) => job.id)), new Set(sweep.trials.map((t) => t.job)));
    await second.close();
    rmSync(scratch, { recursive: true, force: true });
  });
});
