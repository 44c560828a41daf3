import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { LocalArtifactStore } from '../../../common/artifact-store.js';
import { JobArtifacts } from '../../../common/job-artifacts.js';
import { WeightsCatalog } from '../../../common/weights-catalog.js';
import { BUILT_IN_MANIFEST } from '../../../common/weights-manifest.js';
import { WeightsStore } from '../../../common/weights-store.js';
import { ConflictError, IdempotencyKeyReusedError, InvalidInputError, NotFoundError, QuotaExceededError } from '../../../common/errors.js';
import { createLogger } from '../../../common/logger.js';
import { CANCELLED_REASON, QueueName, Queues } from '../../../common/queue-facade.js';
import { redisKeys } from '../../../common/redis-keys.js';
import { redisConnection } from '../../../common/redis-connection.js';
import type { Caller } from '../../../schemas/auth.js';
import { JobSpec } from '../../../schemas/job-spec.js';
import type { WorkerProgress } from '../../../schemas/queue.js';
import { JobService } from '../../../services/jobs/job-service.js';
import { progressOf, stateOf } from '../../../services/jobs/job-status.js';
import { tempDir } from '../../helpers/torch.js';
import { dropKeysAndDisconnect } from '../../helpers/redis.js';

const reported: WorkerProgress = {
  datasetDigest: null,
  phase: 'training',
  epoch: 2,
  totalEpochs: 5,
  step: 3,
  totalSteps: 6,
  percent: 30,
  etaSeconds: 40,
  imagesPerSecond: 12.5,
  download: null,
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
    assert.equal(stateOf('active', undefined, false, false), 'stalled', 'its worker sends no heartbeat');
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
      imagesPerSecond: 12.5,
      download: null,
    });
    const retried = progressOf('queued', reported, 5);
    assert.deepEqual([retried.phase, retried.etaSeconds], ['queued', null], 'a retried job waits again');
    assert.deepEqual(progressOf('completed', reported, 5).phase, 'done');
    assert.equal(progressOf('completed', reported, 5).imagesPerSecond, null, 'a rate only while it runs');
    assert.equal(progressOf('completed', reported, 5).percent, 100);
    assert.equal(progressOf('failed', reported, 5).phase, 'training', 'a failed job shows where it stopped');
    assert.equal(progressOf('failed', reported, 5).etaSeconds, null, 'and promises no end');
    const cancelled = progressOf('cancelled', reported, 5);
    assert.deepEqual(
      [cancelled.phase, cancelled.etaSeconds, cancelled.epoch],
      ['cancelled', null, 2],
      'a cancelled job says so, where it stopped',
    );
    const fetching = {
      ...reported,
      phase: 'downloading_weights' as const,
      download: { variant: 'imagenet', bytes: 5, totalBytes: 10, percent: 50, waiting: false },
    };
    assert.deepEqual(progressOf('running', fetching, 5).download, fetching.download, 'the bytes of weights on their way');
  });
});

describe('the job service on a real Redis', () => {
  const scratch = tempDir('job-service');
  const prefix = `test-job-service-${process.pid}`;
  const redis = redisConnection(
    { REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
    'producer',
    createLogger('api', 'silent'),
  );
  const queues = new Queues(redis, { prefix, attempts: 1 });
  const store = new LocalArtifactStore(path.join(scratch, 'artifacts'));
  const catalog = new WeightsCatalog(new WeightsStore(store), BUILT_IN_MANIFEST);
  const jobs = new JobService(queues, redis, store, catalog, {
    prefix,
    dataDir: path.join(scratch, 'data'),
    quotaOpenJobs: 8,
    quotaArtifactBytes: 1_000_000,
    downloadCache: { maxBytes: 1_000_000, maxAgeMs: 3600_000 },
    maxWaiting: 1000,
    retentionMs: 3600_000,
    heartbeatMs: 1000,
  });
  const spec = JobSpec.parse({ mode: 'pretrained', weights: 'random', inputSize: 32 });
  const alice: Caller = { owner: 'alice', admin: false };
  const bob: Caller = { owner: 'bob', admin: false };
  const admin: Caller = { owner: 'admin', admin: true };

  before(() => mkdirSync(path.join(scratch, 'data', 'one-class', 'cats'), { recursive: true }));
  after(async () => {
    await queues.close();
    await dropKeysAndDisconnect(redis, prefix);
    rmSync(scratch, { recursive: true, force: true });
  });

  it('submits a job that reads back queued, with its links', async () => {
    const { status, created } = await jobs.submit(alice, spec);
    assert.equal(created, true);
    assert.deepEqual([status.state, status.progress.phase, status.mode], ['queued', 'queued', 'pretrained']);
    assert.equal(status.links.preflight, `/v1/jobs/${status.id}/preflight`);
    assert.deepEqual(await jobs.status(alice, status.id), status);
  });

  it('returns the same job for the same Idempotency-Key and spec, and refuses another spec', async () => {
    const first = await jobs.submit(alice, spec, 'key-1');
    const again = await jobs.submit(alice, spec, 'key-1');
    assert.equal(again.created, false);
    assert.equal(again.status.id, first.status.id);
    await assert.rejects(jobs.submit(alice, { ...spec, seed: 1 }, 'key-1'), IdempotencyKeyReusedError);
  });

  it("checks the start weights: a known variant's name, or one of the caller's own completed jobs", async () => {
    await assert.rejects(
      jobs.submit(alice, JobSpec.parse({ ...spec, weights: 'imagenet_v3' })),
      (error: Error) =>
        error instanceof InvalidInputError &&
        error.errors[0].path === 'weights' &&
        /known: random, imagenet, imagenet_v2/.test(error.message),
    );
    assert.equal((await jobs.submit(alice, JobSpec.parse({ ...spec, weights: 'imagenet_v2' }))).created, true);
    const { status } = await jobs.submit(alice, spec);
    await assert.rejects(jobs.submit(bob, JobSpec.parse({ ...spec, weights: { job: status.id } })), NotFoundError, "another owner's job");
    await assert.rejects(jobs.submit(alice, JobSpec.parse({ ...spec, weights: { job: status.id } })), ConflictError, 'not completed yet');
  });

  it('refuses a folder dataset that is not usable, naming the field', async () => {
    const bad = JobSpec.parse({ mode: 'feature_extraction', dataset: { type: 'folder', path: 'one-class' } });
    await assert.rejects(
      jobs.submit(alice, bad),
      (error: unknown) => error instanceof InvalidInputError && error.errors[0].path === 'dataset.path',
    );
  });

  it('cancels a queued job once, and knows no unknown or malformed id', async () => {
    const { status } = await jobs.submit(alice, spec);
    const cancelled = await jobs.cancel(alice, status.id);
    assert.deepEqual([cancelled.state, cancelled.cancelRequested], ['cancelled', true]);
    await assert.rejects(jobs.cancel(alice, status.id), ConflictError);
    await assert.rejects(jobs.cancel(alice, '3b241101-e2bb-4255-8caf-4136c566a962'), NotFoundError);
    assert.equal(await jobs.status(alice, 'not-a-uuid'), null);
  });

  it('answers for results a job has not written yet: 409 for the summary, empty metrics', async () => {
    const { status } = await jobs.submit(alice, spec);
    await assert.rejects(jobs.summary(alice, status.id), ConflictError);
    assert.deepEqual((await jobs.metrics(alice, status.id)).epochs, []);
    await assert.rejects(jobs.completedModel(alice, status.id), /this job is queued/);
  });

  it("hides one owner's jobs from another (not found, not forbidden) and shows the admin everything", async () => {
    const { status } = await jobs.submit(alice, spec);
    assert.equal(status.owner, 'alice');
    assert.equal(await jobs.status(bob, status.id), null);
    await assert.rejects(jobs.cancel(bob, status.id), NotFoundError);
    await assert.rejects(jobs.metrics(bob, status.id), NotFoundError);
    await assert.rejects(jobs.completedModel(bob, status.id), NotFoundError);
    assert.equal((await jobs.status(admin, status.id))?.owner, 'alice');
    const bobs = await jobs.list(bob, { limit: 100, offset: 0 });
    assert.equal(bobs.items.filter((item) => item.id === status.id).length, 0);
    const everyone = await jobs.list(admin, { limit: 100, offset: 0 });
    assert.ok(everyone.items.some((item) => item.id === status.id));
  });

  it('keeps Idempotency-Keys per owner: the same key from another owner makes another job', async () => {
    const first = await jobs.submit(alice, spec, 'shared-key');
    const other = await jobs.submit(bob, { ...spec, seed: 7 }, 'shared-key');
    assert.equal(other.created, true);
    assert.notEqual(other.status.id, first.status.id);
    assert.equal(other.status.owner, 'bob');
  });

  it("pages an owner's list newest first in Redis, and filters by state", async () => {
    const carol: Caller = { owner: 'carol', admin: false };
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await jobs.submit(carol, { ...spec, seed: i })).status.id);
    await jobs.cancel(carol, ids[1]);
    const first = await jobs.list(carol, { limit: 2, offset: 0 });
    const second = await jobs.list(carol, { limit: 2, offset: 2 });
    assert.equal(first.total, 5);
    assert.deepEqual(
      [...first.items, ...second.items].map((item) => item.id),
      [ids[4], ids[3], ids[2], ids[1]],
    );
    const cancelled = await jobs.list(carol, { state: 'cancelled', limit: 10, offset: 0 });
    assert.deepEqual([cancelled.total, cancelled.items[0].id], [1, ids[1]]);
    const queued = await jobs.list(carol, { state: 'queued', limit: 2, offset: 1 });
    assert.deepEqual([queued.total, ...queued.items.map((item) => item.id)], [4, ids[3], ids[2]]);
  });

  it('forgets indexed ids whose job is gone', async () => {
    const dave: Caller = { owner: 'dave', admin: false };
    const { status } = await jobs.submit(dave, spec);
    await queues.get(QueueName.Training).remove(status.id);
    const listed = await jobs.list(dave, { limit: 10, offset: 0 });
    assert.deepEqual([listed.items.length, listed.total], [0, 0]);
    assert.equal(await redis.zcard(`${prefix}:owner-jobs:dave`), 0);
  });

  it("refuses new jobs while an owner's jobs keep their quota of models and checkpoints; purging one frees it", async () => {
    const grace: Caller = { owner: 'grace', admin: false };
    const { status } = await jobs.submit(grace, spec);
    await jobs.cancel(grace, status.id);
    // As a worker records it after each checkpoint.
    await redis.hset(redisKeys(prefix).artifactBytes('grace'), status.id, 1_000_000);
    await assert.rejects(jobs.submit(grace, { ...spec, seed: 1 }), (error: unknown) => {
      assert.ok(error instanceof QuotaExceededError);
      assert.match(error.message, /keep 1000000 bytes .* quota is 1000000; purge finished jobs/);
      assert.deepEqual(error.details, { quota: 'artifactBytes', limit: 1_000_000 });
      return true;
    });
    assert.equal((await jobs.submit(bob, { ...spec, seed: 1 })).created, true, "another owner's quota is their own");
    assert.equal((await jobs.submit(admin, { ...spec, seed: 2 })).created, true, 'the admin has none');
    await jobs.purge(grace, status.id);
    assert.equal((await jobs.submit(grace, { ...spec, seed: 1 })).created, true);
  });

  it('purges a finished job with everything it kept, and refuses while it may still run', async () => {
    const erin: Caller = { owner: 'erin', admin: false };
    const { status } = await jobs.submit(erin, spec);
    const artifacts = new JobArtifacts(store, status.id);
    await store.write(`${artifacts.root}/metrics.json`, '{}');
    await assert.rejects(jobs.purge(erin, status.id), ConflictError, 'a queued job is cancelled first');
    await assert.rejects(jobs.purge(bob, status.id), NotFoundError);
    await jobs.cancel(erin, status.id);
    await jobs.purge(erin, status.id);
    assert.equal(await jobs.status(erin, status.id), null);
    assert.equal(await store.stat(`${artifacts.root}/metrics.json`), null);
    assert.equal((await jobs.list(erin, { limit: 10, offset: 0 })).total, 0);
  });

  it('sweeps jobs that ended more than the retention ago, with their artifacts, and keeps the rest', async () => {
    const frank: Caller = { owner: 'frank', admin: false };
    const ended = (await jobs.submit(frank, { ...spec, seed: 21 })).status.id;
    const waiting = (await jobs.submit(frank, { ...spec, seed: 22 })).status.id;
    const dropped = (await jobs.submit(frank, { ...spec, seed: 23 })).status.id;
    await jobs.cancel(frank, ended);
    await queues.get(QueueName.Training).remove(dropped); // as BullMQ's own retention does
    for (const id of [ended, waiting, dropped]) await store.write(`jobs/${id}/summary.json`, '{}');
    const removed = await jobs.sweepExpired(Date.now() + 2 * 3600_000);
    assert.ok(removed.includes(ended) && removed.includes(dropped), `removed ${removed.join(', ')}`);
    assert.ok(!removed.includes(waiting), 'a queued job is not expired');
    assert.deepEqual(
      await Promise.all([ended, waiting, dropped].map(async (id) => (await store.stat(`jobs/${id}/summary.json`)) !== null)),
      [false, true, false],
    );
    assert.deepEqual(
      (await jobs.list(frank, { limit: 10, offset: 0 })).items.map((item) => item.id),
      [waiting],
    );
  });
});
