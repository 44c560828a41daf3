import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { JobStatus } from '../../schemas/job-status.js';
import type { Metrics } from '../../schemas/metrics.js';
import type { TfjsModelJson } from '../../schemas/artifacts.js';
import { JobArtifacts } from '../../common/job-artifacts.js';
import { QueueName } from '../../common/queue-facade.js';
import { redisKeys } from '../../common/redis-keys.js';
import { LOCAL_OWNER } from '../../schemas/auth.js';
import { freePort } from '../helpers/ports.js';
import { finished, pollJob, sleep, startService, type TestService, type WorkerProcess } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';

const slowSpec = {
  mode: 'fine_tuning',
  weights: 'random',
  inputSize: 64,
  epochs: 3,
  batchSize: 16,
  dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 200, imageSize: 64, seed: 5 },
};

/** Per-epoch metrics without their wall-clock seconds: what two runs of one spec must share bit for bit. */
const withoutTimes = (m: Metrics) => m.epochs.map(({ seconds: _seconds, ...rest }) => rest);

describe('cancel, resume and failing fast', () => {
  let service: TestService;
  let worker: WorkerProcess;
  const manifestDir = tempDir('cancel-manifest');
  let offlineUrl: string;
  before(async () => {
    // No copy of the ImageNet weights, and their URL unreachable (as on a machine offline): jobs asking for them fail at once.
    offlineUrl = `http://127.0.0.1:${await freePort()}/models/resnet50-0676ba61.pth`;
    const manifest = { imagenet: { url: offlineUrl, mebibytes: 97.781, sha256Prefix: '0676ba61' } };
    writeFileSync(path.join(manifestDir, 'manifest.json'), JSON.stringify(manifest));
    service = await startService('cancel', {
      WEIGHTS_MANIFEST: path.join(manifestDir, 'manifest.json'),
      WEIGHTS_DOWNLOAD_RETRIES: '1',
      JOB_ATTEMPTS: '3',
    });
    worker = await service.startWorker();
  });
  after(async () => {
    await service.stop();
    rmSync(manifestDir, { recursive: true, force: true });
  });

  const submit = async (spec: object) => {
    const response = await service.http().post('/v1/jobs').send(spec);
    assert.equal(response.status, 202, response.text);
    return response.body as JobStatus;
  };
  const metricsOf = async (id: string) => (await service.http().get(`/v1/jobs/${id}/metrics`)).body as Metrics;

  it('a worker without the native kernels says so in one line, and reports wasm ones', async () => {
    const fallback = await service.startWorker({ RETRAIN_NATIVE_KERNELS: '0' });
    assert.equal(fallback.output().match(/native kernels off/g)?.length, 1, fallback.output());
    assert.doesNotMatch(worker.output(), /native kernels off/);
    const ready = await service.http().get('/readyz');
    const kernels = (ready.body.workers as Array<{ pid: number; backend: { kernels: string } }>).map((w) => [w.pid, w.backend.kernels]);
    assert.deepEqual(
      kernels.find(([pid]) => pid === fallback.child.pid),
      [fallback.child.pid, 'wasm'],
    );
    assert.match(String(kernels.find(([pid]) => pid === worker.child.pid)?.[1]), /^onednn /);
    await fallback.terminate();
  });

  it('fails a job whose ImageNet weights cannot be fetched at once, without retries, naming the URL, the error and the ways out', async () => {
    const job = await submit({ ...slowSpec, weights: 'imagenet', epochs: 1 });
    const status = await pollJob(service, job.id, finished, 60_000);
    assert.equal(status.state, 'failed');
    const reason = status.failure!.reason;
    assert.ok(reason.includes(`could not fetch the "imagenet" weights from ${offlineUrl}`), reason);
    assert.match(reason, /ECONNREFUSED/);
    assert.match(reason, /after 2 attempts/);
    assert.match(reason, /npx retrain weights import FILE --as imagenet/);
    assert.match(reason, /WEIGHTS_MANIFEST/);
    assert.match(reason, /"weights": "random"/);
    assert.equal(status.attempts, 1, 'no retry of the job: the worker tried the URL itself');
    assert.equal(status.progress.phase, 'downloading_weights', 'where it failed');
    const download = await service.http().get(`/v1/jobs/${job.id}/checkpoint`);
    assert.equal(download.status, 409, 'not "no final model yet": there will be none');
    assert.ok(download.body.detail.startsWith(`job ${job.id} failed: could not fetch the "imagenet" weights`), download.body.detail);
    assert.match(download.body.detail, /; it has no final model$/);
  });

  it('stops a running job before any step that would begin after the request, and never starts a cancelled queued one', async () => {
    const running = await submit(slowSpec);
    const queued = await submit({ ...slowSpec, seed: 1 });
    await pollJob(service, running.id, (s) => s.state === 'running' && s.progress.phase === 'training' && s.progress.step >= 1);

    const cancelQueued = await service.http().delete(`/v1/jobs/${queued.id}`);
    assert.equal(cancelQueued.status, 202);
    assert.equal(cancelQueued.body.state, 'cancelled', 'a queued job is cancelled at once');

    const cancelRunning = await service.http().delete(`/v1/jobs/${running.id}`);
    assert.equal(cancelRunning.status, 202);
    assert.equal(cancelRunning.body.cancelRequested, true);
    const requestedAt = await service.redis.get(redisKeys(service.config.QUEUE_PREFIX).cancel(running.id));
    const stopped = await pollJob(service, running.id, finished, 60_000);
    assert.equal(stopped.state, 'cancelled');
    assert.equal(stopped.progress.epoch, 1);
    assert.equal((await metricsOf(running.id)).epochs.length, 0, 'no epoch completed after the cancel');
    const download = await service.http().get(`/v1/jobs/${running.id}/checkpoint?epoch=latest`);
    assert.deepEqual([download.status, download.body.detail], [409, `job ${running.id} was cancelled; it has no checkpoint`]);
    assert.equal(stopped.progress.phase, 'cancelled');
    assert.equal(stopped.progress.etaSeconds, null);

    const logs = await service.redis.lrange(`${service.config.QUEUE_PREFIX}:${QueueName.Training}:${running.id}:logs`, 0, -1);
    const line = logs.find((l) => /^cancelled before epoch 1 step \d+ /.test(l));
    assert.ok(line, logs.join('\n'));
    const { cancelSeenAt, lastPassedCheckAt } = JSON.parse(line.slice(line.indexOf('{'))) as {
      cancelSeenAt: string;
      lastPassedCheckAt: string;
    };
    // Each step starts with a check of the flag: the last one that let a step start ran before the
    // request, and the next one saw it.
    assert.ok(
      requestedAt && lastPassedCheckAt <= requestedAt && requestedAt <= cancelSeenAt,
      `${lastPassedCheckAt} <= ${requestedAt} <= ${cancelSeenAt}`,
    );

    const never = await pollJob(service, queued.id, (s) => s.state === 'cancelled' && s.finishedAt !== null, 60_000);
    // A worker may take it from the queue, see the flag and drop it: it never reports a step.
    assert.deepEqual([never.progress.phase, never.progress.epoch, never.progress.step], ['cancelled', 0, 0]);
    assert.equal((await service.http().get(`/v1/jobs/${queued.id}/summary`)).status, 409, 'it never built a model');
  });

  it('resumes after each of three kills (in epochs 2, 3 and 4) from the last checkpoint, every epoch once, as if never interrupted', async () => {
    const spec = {
      mode: 'fine_tuning',
      weights: 'random',
      inputSize: 32,
      epochs: 4,
      batchSize: 4,
      dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 32, imageSize: 32, seed: 9 },
      fineTuning: { trainableFrom: 'layer3', freezeBatchNorm: true },
    };
    const job = await submit(spec);
    const beforeKills: Metrics['epochs'] = [];
    for (const epoch of [2, 3, 4]) {
      // Polled often: an epoch of 13 steps takes about a second.
      await pollJob(service, job.id, (s) => s.progress.epoch === epoch && s.progress.phase === 'training', 120_000, 40);
      await worker.kill();
      const stalled = await pollJob(service, job.id, (s) => s.state !== 'running', 30_000);
      assert.equal(stalled.state, 'stalled', 'its worker sends no heartbeat: not running');
      const saved = (await metricsOf(job.id)).epochs;
      assert.deepEqual(
        saved.map((e) => e.epoch),
        Array.from({ length: epoch - 1 }, (_, i) => i + 1),
        `killed during epoch ${epoch}`,
      );
      beforeKills.push(saved[epoch - 2]);
      worker = await service.startWorker();
    }
    const status = await pollJob(service, job.id, finished, 180_000);
    assert.equal(status.state, 'completed', JSON.stringify(status.failure));
    assert.equal(status.result?.resumedFromEpoch, 3);
    const metrics = await metricsOf(job.id);
    assert.deepEqual(
      metrics.epochs.map((e) => e.epoch),
      [1, 2, 3, 4],
      'no epoch twice',
    );
    assert.deepEqual(metrics.epochs.slice(0, 3), beforeKills, 'each epoch is the one trained before the next kill');
    // The worker logs the completion after BullMQ has recorded it: what the API answered above.
    await worker.logged('job completed');
    const kept = await new JobArtifacts(service.store, job.id).modelBytes();
    // Counted apart from the store: every file of its checkpoints, final model and start weights, as find sees them.
    const jobFolder = path.join(service.config.ARTIFACTS_DIR, 'jobs', job.id);
    const counted = ['checkpoints', 'final', 'start-weights.safetensors'].map((name) => path.join(jobFolder, name));
    const sizes = execFileSync('find', [...counted, '-type', 'f', '-printf', '%s\\n'], { encoding: 'utf8' })
      .trim()
      .split('\n');
    assert.equal(
      kept,
      sizes.reduce((sum, size) => sum + Number(size), 0),
    );
    // The frozen layers' start weights once (the stages before layer3 and every BatchNorm); each saved model
    // only layer3's and layer4's convolutions and the head, reading the rest from that copy: what the
    // resumed epochs were loaded from.
    const { totals } = (await service.http().get(`/v1/jobs/${job.id}/summary`)).body as { totals: { totalParams: number } };
    const startBytes = statSync(path.join(jobFolder, 'start-weights.safetensors')).size;
    const finalBytes = statSync(path.join(jobFolder, 'final', 'weights.bin')).size;
    const finalJson = JSON.parse(readFileSync(path.join(jobFolder, 'final', 'model.json'), 'utf8')) as TfjsModelJson;
    assert.equal((finalJson.userDefinedMetadata?.retrainFrozenFrom as { key: string }).key, `jobs/${job.id}/start-weights.safetensors`);
    assert.ok(startBytes + finalBytes > 4 * totals.totalParams, 'every weight is kept once');
    assert.ok(startBytes * 5 < finalBytes, `the start weights keep the frozen layers alone (${startBytes} bytes)`);
    assert.equal(
      Number(await service.redis.hget(redisKeys(service.config.QUEUE_PREFIX).artifactBytes(LOCAL_OWNER), job.id)),
      kept,
      'counted for its owner',
    );

    // The same spec in another worker process, uninterrupted: the same numbers, bit for bit.
    const again = await submit(spec);
    assert.equal((await pollJob(service, again.id, finished, 180_000)).state, 'completed');
    const uninterrupted = await metricsOf(again.id);
    assert.deepEqual(withoutTimes(uninterrupted), withoutTimes(metrics));
    assert.deepEqual(uninterrupted.evaluation, metrics.evaluation);
  });

  it('a worker told to stop saves the epoch in progress and hands its job back; the next goes on from that step, as if never stopped', async () => {
    const spec = {
      mode: 'fine_tuning',
      weights: 'random',
      inputSize: 64,
      epochs: 2,
      batchSize: 4,
      augmentation: { randomResizedCrop: true, horizontalFlip: true },
      dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 100, imageSize: 64, seed: 3 },
      fineTuning: { trainableFrom: 'layer4', freezeBatchNorm: true },
    };
    const stepsPerEpoch = (2 * 80) / 4;
    const job = await submit(spec);
    await pollJob(service, job.id, (s) => s.progress.epoch === 1 && s.progress.phase === 'training' && s.progress.step >= 2, 120_000);
    assert.equal(await worker.terminate(), 0, worker.output());
    assert.match(worker.output(), /handed back/);

    const handedBack = await pollJob(service, job.id, (s) => s.state !== 'running', 10_000);
    assert.equal(handedBack.state, 'queued', 'back in the queue, not stalled or failed');
    assert.equal(handedBack.attempts, 0, 'no attempt spent');
    const interrupted = JSON.parse((await service.store.read(`jobs/${job.id}/checkpoints/interrupted/state.json`)).toString()) as {
      epoch: number;
      position: { stepsDone: number };
    };
    assert.equal(interrupted.epoch, 1);
    assert.ok(interrupted.position.stepsDone >= 2 && interrupted.position.stepsDone < stepsPerEpoch, JSON.stringify(interrupted.position));

    worker = await service.startWorker();
    const status = await pollJob(service, job.id, finished, 180_000);
    assert.equal(status.state, 'completed', JSON.stringify(status.failure));
    const logs = await service.redis.lrange(`${service.config.QUEUE_PREFIX}:${QueueName.Training}:${job.id}:logs`, 0, -1);
    assert.ok(logs.includes(`resuming after epoch 0, inside epoch 1 after step ${interrupted.position.stepsDone}`), logs.join('\n'));
    assert.equal(await service.store.stat(`jobs/${job.id}/checkpoints/interrupted/state.json`), null, 'gone once epoch 1 is saved');

    const again = await submit(spec);
    assert.equal((await pollJob(service, again.id, finished, 180_000)).state, 'completed');
    assert.deepEqual(withoutTimes(await metricsOf(job.id)), withoutTimes(await metricsOf(again.id)));
  });

  it('stops the sandboxed trainer when its worker dies alone, so no orphan trains beside the next worker', async () => {
    const job = await submit({ ...slowSpec, epochs: 50 });
    await pollJob(service, job.id, (s) => s.progress.phase === 'training', 120_000);
    const parent = worker.child.pid!;
    const trainers = execFileSync('ps', ['-o', 'pid=', '--ppid', String(parent)], { encoding: 'utf8' })
      .split('\n')
      .map(Number)
      .filter(Boolean);
    assert.equal(trainers.length, 1, 'one sandboxed child trains');
    const exited = new Promise((resolve) => worker.child.once('exit', resolve));
    process.kill(parent, 'SIGKILL');
    await exited;
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 600 && alive(trainers[0]); i++) await sleep(100);
    assert.equal(alive(trainers[0]), false, 'the trainer outlived its worker');
    worker = await service.startWorker();
    assert.equal((await service.http().delete(`/v1/jobs/${job.id}`)).status, 202);
  });
});
