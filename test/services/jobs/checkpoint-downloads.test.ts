import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buffer, text } from 'node:stream/consumers';
import * as tar from 'tar';
import { LocalArtifactStore, type ArtifactStore } from '../../../common/artifact-store.js';
import { openArtifactStore } from '../../../common/open-artifact-store.js';
import { NotFoundError } from '../../../common/errors.js';
import { JobArtifacts } from '../../../common/job-artifacts.js';
import { emptyMetrics } from '../../../schemas/metrics.js';
import { createLogger } from '../../../common/logger.js';
import { redisKeys } from '../../../common/redis-keys.js';
import { redisConnection } from '../../../common/redis-connection.js';
import { ArchiveCache } from '../../../services/jobs/archive-cache.js';
import type { CheckpointFormat, ExportRequest } from '../../../schemas/artifacts.js';
import { checkpointDownload, type CheckpointSelector, type Download } from '../../../services/jobs/checkpoint-downloads.js';
import { startS3Server, type S3Server } from '../../helpers/s3-server.js';
import { tempDir } from '../../helpers/torch.js';
import { dropKeysAndDisconnect } from '../../helpers/redis.js';

const JOB_ID = '3b241101-e2bb-4255-8caf-4136c566a962';

/** A model.json (tfjs' layers format, no weights) padded with spaces to `length` bytes. */
function modelJson(length: number, metadata: object = {}): string {
  const json = JSON.stringify({ modelTopology: {}, weightsManifest: [], userDefinedMetadata: metadata });
  return json + ' '.repeat(Math.max(0, length - json.length));
}

function downloadContract(name: string, open: () => ArtifactStore) {
  let artifacts: JobArtifacts;
  let store: ArtifactStore;
  let archives: ArchiveCache;
  // Conversions of real models are tested end to end (test/e2e/exports.test.ts); here, what is asked for and when.
  const exports: ExportRequest[] = [];
  let converting = Promise.resolve();
  const running = new Set<string>();
  // As the thread exporter does: one conversion per key at a time.
  const exporter = {
    begin: (request: ExportRequest) => {
      if (running.has(request.key)) return;
      running.add(request.key);
      exports.push(request);
      converting = store.write(request.key, `${request.format} of ${request.model.folder}`).finally(() => running.delete(request.key));
    },
  };
  /** A download once it is made: a format converted on first request is asked for again once its conversion ended. */
  const served = async (selector: CheckpointSelector, format: CheckpointFormat): Promise<Download> => {
    const first = await checkpointDownload(artifacts, selector, { format, precision: 'fp32' }, caches());
    if (!('converting' in first)) return first;
    await converting;
    const again = await checkpointDownload(artifacts, selector, { format, precision: 'fp32' }, caches());
    if ('converting' in again) throw new Error('still converting after its conversion ended');
    return again;
  };
  const caches = () => ({ archives, exporter, caller: { owner: 'ada', admin: false } });
  const prefix = `test-downloads-${name}-${process.pid}`;
  const redis = redisConnection(
    { REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
    'producer',
    createLogger('api', 'silent'),
  );
  before(() => {
    store = open();
    artifacts = new JobArtifacts(store, JOB_ID);
    archives = new ArchiveCache(redis, store, prefix, { maxBytes: 10 * 1024 ** 2, maxAgeMs: 3600_000 });
  });
  after(async () => {
    await dropKeysAndDisconnect(redis, prefix);
  });

  it('picks the final model, the latest, the best or a numbered epoch, among complete ones only', async () => {
    await assert.rejects(artifacts.savedModel({ kind: 'final' }), NotFoundError);
    await assert.rejects(artifacts.savedModel({ kind: 'latest' }), /no checkpoint yet/);
    for (const epoch of [1, 2]) await artifacts.commitCheckpoint({ epoch, history: [], optimizerWeights: [] });
    await store.write(`${artifacts.checkpointFolder(3)}/weights.bin`, 'half-written');
    assert.equal((await artifacts.savedModel({ kind: 'latest' })).label, 'epoch-2');
    await assert.rejects(artifacts.savedModel({ kind: 'epoch', epoch: 3 }), /no checkpoint for epoch 3/);
    await assert.rejects(artifacts.savedModel({ kind: 'best' }), /no validated epoch/);
    await artifacts.writeMetrics({ ...emptyMetrics(), bestEpoch: 1 });
    assert.equal((await artifacts.savedModel({ kind: 'best' })).label, 'epoch-1');
  });

  it('serves a stored file with its sha256 as the ETag', async () => {
    await store.write(artifacts.torchvisionWeights(artifacts.finalFolder).key, 'weights');
    await store.write(`${artifacts.finalFolder}/metadata.json`, '{}');
    const download = await served({ kind: 'final' }, 'safetensors');
    assert.equal(download.etag, createHash('sha256').update('weights').digest('hex'));
    assert.equal(download.filename, `${JOB_ID}-final.safetensors`);
    assert.equal(await text(await download.open()), 'weights');
  });

  it('exports formats the worker did not write on first request, then serves the kept file', async () => {
    const epoch = artifacts.epochFolder(1);
    for (const format of ['safetensors', 'onnx'] as const) {
      const first = await checkpointDownload(artifacts, { kind: 'epoch', epoch: 1 }, { format, precision: 'fp32' }, caches());
      assert.deepEqual(first, { converting: true, retryAfterSeconds: 5 }, 'converting on first request, answered at once');
      const download = await served({ kind: 'epoch', epoch: 1 }, format);
      assert.equal(download.filename, `${JOB_ID}-epoch-1.${format}`);
      assert.equal(await text(await download.open()), `${format} of ${epoch.folder}`);
      assert.equal(download.etag, createHash('sha256').update(`${format} of ${epoch.folder}`).digest('hex'));
      await served({ kind: 'epoch', epoch: 1 }, format);
    }
    assert.deepEqual(
      exports.map((e) => [e.format, e.key]),
      [
        ['safetensors', artifacts.download('epoch-1', 'safetensors').key],
        ['onnx', artifacts.download('epoch-1', 'onnx').key],
      ],
      'each converted once',
    );
    await artifacts.removeCheckpoint(1);
    for (const format of ['safetensors', 'onnx'] as const) assert.equal(await store.stat(artifacts.download('epoch-1', format).key), null);
    await artifacts.commitCheckpoint({ epoch: 1, history: [], optimizerWeights: [] });
  });

  it('archives a model as a tar.gz that tar unpacks to the stored files, built once', async () => {
    // Sizes around the 512-byte tar block: one short of it, exactly it, one past it.
    const files = { 'model.json': modelJson(511), 'weights.bin': Buffer.alloc(100_000 + 512, 7), 'metadata.json': 'y'.repeat(513) };
    for (const [name, data] of Object.entries(files)) await store.write(`${artifacts.finalFolder}/${name}`, data);
    const download = await served({ kind: 'final' }, 'tar.gz');
    const archive = await buffer(await download.open());
    assert.equal(download.size, archive.length);
    assert.equal(download.etag, createHash('sha256').update(archive).digest('hex'));
    assert.equal(download.filename, `${JOB_ID}-final.tar.gz`);

    const unpacked = tempDir('unpacked');
    try {
      writeFileSync(path.join(unpacked, 'model.tar.gz'), archive);
      const listed: string[] = [];
      await tar.x({
        file: path.join(unpacked, 'model.tar.gz'),
        cwd: unpacked,
        strict: true,
        onReadEntry: (entry) => void listed.push(entry.path),
      });
      assert.deepEqual(listed, ['model.json', 'weights.bin', 'metadata.json']);
      for (const [name, data] of Object.entries(files)) assert.ok(readFileSync(path.join(unpacked, name)).equals(Buffer.from(data)), name);
    } finally {
      rmSync(unpacked, { recursive: true, force: true });
    }
    // Built once: a changed model file does not change the kept archive (models are immutable once complete).
    await store.write(`${artifacts.finalFolder}/model.json`, modelJson(600));
    const again = await served({ kind: 'final' }, 'tar.gz');
    assert.equal(again.etag, download.etag);
  });

  it('has the export thread archive a model that keeps only what trains (it must be loaded whole first)', async () => {
    const folder = artifacts.checkpointFolder(3);
    const frozenFrom = { key: 'weights/imagenet.safetensors', sha256: 'a'.repeat(64), variant: 'imagenet' };
    await store.write(`${folder}/model.json`, modelJson(0, { retrainFrozenFrom: frozenFrom }));
    await artifacts.commitCheckpoint({ epoch: 3, history: [], optimizerWeights: [] });
    const before = exports.length;
    const download = await served({ kind: 'epoch', epoch: 3 }, 'tar.gz');
    assert.deepEqual(
      exports.slice(before).map((request) => [request.format, request.model.folder]),
      [['tar.gz', folder]],
    );
    assert.equal((await buffer(await download.open())).toString(), `tar.gz of ${folder}`);
    await artifacts.removeCheckpoint(3);
  });

  it('keeps the archives of all jobs within their bound: building one evicts the least recently used others', async (t) => {
    // Incompressible weights: each archive is about 4 MiB, three of them pass the 10 MiB bound.
    const weights = randomBytes(4 * 1024 ** 2);
    for (const epoch of [1, 2]) {
      const folder = artifacts.checkpointFolder(epoch);
      await store.write(`${folder}/model.json`, modelJson(0, { epoch }));
      await store.write(`${folder}/metadata.json`, `{"epoch":${epoch}}`);
      await store.write(`${folder}/weights.bin`, weights);
    }
    await store.write(`${artifacts.finalFolder}/weights.bin`, weights);
    const download = (selector: CheckpointSelector) => served(selector, 'tar.gz');
    const kept = async (label: string) => (await store.stat(artifacts.download(label, 'tar.gz').key)) !== null;

    await store.remove(artifacts.download('final', 'tar.gz').key); // the earlier test's, of other files
    const first = await download({ kind: 'epoch', epoch: 1 });
    await download({ kind: 'final' });
    await download({ kind: 'epoch', epoch: 1 }); // used again: now the most recent
    assert.deepEqual([await kept('epoch-1'), await kept('final')], [true, true]);
    await download({ kind: 'epoch', epoch: 2 });
    assert.deepEqual(
      [await kept('epoch-1'), await kept('final'), await kept('epoch-2')],
      [true, false, true],
      'the least recently used went',
    );
    assert.equal(await store.stat(`${artifacts.download('final', 'tar.gz').key}.sha256`), null, 'with its hash');
    // Uses within one millisecond still go by recency: served from the cache twice in one tick, the older goes first.
    const tick = Date.now() - 1000; // a second ago: past by the time the new one is built
    const ticking = t.mock.method(Date, 'now', () => tick);
    const sameTick = new ArchiveCache(redis, store, `${prefix}-tick`, { maxBytes: 10, maxAgeMs: 3600_000 });
    for (const key of ['a-used-last', 'z-used-first', 'a-used-last']) await sameTick.used(key, 4);
    ticking.mock.restore();
    await sameTick.used('m-new', 4); // new: past the bound, it makes room
    assert.deepEqual((await redis.zrange(redisKeys(`${prefix}-tick`).archivesUsed, 0, -1)).sort(), ['a-used-last', 'm-new']);

    // An hour unused is past this cache's age: two hours on, only the archive used since stays.
    const later = Date.now() + 2 * 3600_000;
    await redis.zadd(redisKeys(prefix).archivesUsed, later, artifacts.download('epoch-2', 'tar.gz').key);
    assert.deepEqual(await archives.evict(undefined, later + 60_000), [artifacts.download('epoch-1', 'tar.gz').key]);
    assert.equal(await kept('epoch-1'), false);
    await archives.forget(artifacts.root);
    assert.deepEqual(await redis.zrange(redisKeys(prefix).archivesUsed, 0, -1), []);
    assert.equal((await download({ kind: 'epoch', epoch: 1 })).etag, first.etag, 'rebuilt the same on request');
  });
}

describe('checkpoint downloads from the local store', () => {
  const root = tempDir('downloads');
  after(() => rmSync(root, { recursive: true, force: true }));
  downloadContract('local', () => new LocalArtifactStore(root));
});

describe('checkpoint downloads from an S3-compatible store', () => {
  let server: S3Server;
  let store: ArtifactStore;
  before(async () => {
    server = await startS3Server();
    store = await openArtifactStore({ ARTIFACTS_DIR: '/nonexistent', S3_REGION: 'us-east-1', ...server.env('downloads') });
  });
  after(() => server.stop());
  downloadContract('s3', () => store);
});
