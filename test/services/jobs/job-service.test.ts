import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { LocalArtifactStore } from '../../../common/artifact-store.js';
import { ConflictError, IdempotencyKeyReusedError, InvalidInputError, NotFoundError } from '../../../common/errors.js';
import { createLogger } from '../../../common/logger.js';
import { CANCELLED_REASON, Queues, redisConnection } from '../../../common/queues.js';
import { JobSpec } from '../../../schemas/job-spec.js';
import type { WorkerProgress } from '../../../schemas/queue.js';
import { JobService, progressOf, stateOf } from '../../../services/jobs/job-service.js';
import { tempDir } from '../../helpers/torch.js';

const reported: WorkerProgress = {
  phase: 'training',
  epoch: 2,
  totalEpochs: 5,
  step: 3,
  totalSteps: 6,
  percent: 30,
  etaSeconds: 40,
  latestMetrics: null,
  backend: null,
  skippedFiles: [],
  skippedFileCount: 0,
};

describe('job states and progress', () => {
  it("maps BullMQ's states, the failure reason and the cancel flag to ours", () => {
    assert.equal(stateOf('completed', undefined, true), 'completed');
    assert.equal(stateOf('failed', CANCELLED_REASON, false), 'cancelled');
    assert.equal(stateOf('failed', 'out of memory', false), 'failed');
    assert.equal(stateOf('active', undefined, true), 'running', 'a running job stops at its next step');
    assert.equal(stateOf('waiting', undefined, true), 'cancelled', 'a queued job never starts');
    assert.equal(stateOf('delayed', undefined, false), 'queued');
  });

  it('keeps the phase in step with the state', () => {
    assert.equal(progressOf('queued', null, 5).phase, 'queued');
    assert.equal(progressOf('running', null, 5).phase, 'starting', 'running, and the worker has not reported yet');
    assert.deepEqual(progressOf('running', reported, 5), {
      phase: 'training',
      epoch: 2,
      totalEpochs: 5,
      step: 3,
      totalSteps: 6,
      percent: 30,
      etaSeconds: 40,
    });
    const retried = progressOf('queued', reported, 5);
    assert.deepEqual([retried.phase, retried.etaSeconds], ['queued', null], 'a retried job waits again');
    assert.deepEqual(progressOf('completed', reported, 5).phase, 'done');
    assert.equal(progressOf('completed', reported, 5).percent, 100);
    assert.equal(progressOf('failed', reported, 5).phase, 'training', 'a failed job shows where it stopped');
  });
});

describe('the job service on a real Redis', () => {
  const scratch = tempDir('job-service');
  const prefix = `test-job-service-${process.pid}`;
  const redis = redisConnection(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', 'producer', createLogger('api', 'silent'));
  const queues = new Queues(redis, { prefix, attempts: 1 });
  const jobs = new JobService(queues, redis, new LocalArtifactStore(path.join(scratch, 'artifacts')), {
    prefix,
    dataDir: path.join(scratch, 'data'),
  });
  const spec = JobSpec.parse({ mode: 'pretrained', weights: 'random', inputSize: 32 });

  before(() => mkdirSync(path.join(scratch, 'data', 'one-class', 'cats'), { recursive: true }));
  after(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await queues.close();
    await redis.quit();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('submits a job that reads back queued, with its links', async () => {
    const { status, created } = await jobs.submit(spec);
    assert.equal(created, true);
    assert.deepEqual([status.state, status.progress.phase, status.mode], ['queued', 'queued', 'pretrained']);
    assert.equal(status.links.preflight, `/v1/jobs/${status.id}/preflight`);
    assert.deepEqual(await jobs.status(status.id), status);
  });

  it('returns the same job for the same Idempotency-Key and spec, and refuses another spec', async () => {
    const first = await jobs.submit(spec, 'key-1');
    const again = await jobs.submit(spec, 'key-1');
    assert.equal(again.created, false);
    assert.equal(again.status.id, first.status.id);
    await assert.rejects(jobs.submit({ ...spec, seed: 1 }, 'key-1'), IdempotencyKeyReusedError);
  });

  it('refuses a folder dataset that is not usable, naming the field', async () => {
    const bad = JobSpec.parse({ mode: 'feature_extraction', dataset: { type: 'folder', path: 'one-class' } });
    await assert.rejects(
      jobs.submit(bad),
      (error: unknown) => error instanceof InvalidInputError && error.errors[0].path === 'dataset.path',
    );
  });

  it('cancels a queued job once, and knows no unknown or malformed id', async () => {
    const { status } = await jobs.submit(spec);
    const cancelled = await jobs.cancel(status.id);
    assert.deepEqual([cancelled.state, cancelled.cancelRequested], ['cancelled', true]);
    await assert.rejects(jobs.cancel(status.id), ConflictError);
    await assert.rejects(jobs.cancel('3b241101-e2bb-4255-8caf-4136c566a962'), NotFoundError);
    assert.equal(await jobs.status('not-a-uuid'), null);
  });

  it('answers for results a job has not written yet: 409 for the summary, empty metrics', async () => {
    const { status } = await jobs.submit(spec);
    await assert.rejects(jobs.summary(status.id), ConflictError);
    assert.deepEqual((await jobs.metrics(status.id)).epochs, []);
    await assert.rejects(jobs.completedModel(status.id), /this job is queued/);
  });
});
