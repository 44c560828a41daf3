import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, existsSync, mkdirSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import * as tar from 'tar';
import path from 'node:path';
import { LocalArtifactStore } from '../../../common/artifact-store.js';
import { openArtifactStore } from '../../../common/open-artifact-store.js';
import { createLogger } from '../../../common/logger.js';
import { redisConnection, whenReady } from '../../../common/redis-connection.js';
import { SlowSenderError, TooLargeError } from '../../../common/errors.js';
import { DatasetStore } from '../../../services/datasets/dataset-store.js';
import { DatasetQuota } from '../../../services/datasets/dataset-quota.js';
import { redisKeys } from '../../../common/redis-keys.js';
import { writeMessyDataset } from '../../helpers/images.js';
import { startS3Server, type S3Server } from '../../helpers/s3-server.js';
import { tempDir } from '../../helpers/torch.js';
import { dropKeysAndDisconnect } from '../../helpers/redis.js';

const ID = '3b241101-e2bb-4255-8caf-4136c566a962';
const LIMITS = {
  maxArchiveBytes: 1024,
  maxFiles: 1,
  maxUnpackedBytes: 1024,
  quotaBytes: 1024,
  minBytesPerSecond: 1024,
  rateWindowMs: 30_000,
};
const prefix = `test-dataset-store-${process.pid}`;
const redis = redisConnection({ REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' }, 'producer', createLogger('api', 'silent'));
const ledger = { redis, prefix };
before(() => whenReady(redis, 5000));
const readFileSize = (file: string) => statSync(file).size;
after(async () => {
  await dropKeysAndDisconnect(redis, prefix);
});
const OTHER_ID = '9c7a2f3e-1d4b-4e8a-9f6c-2b5d8e1a7c40';
const emptyPreflight = {
  classes: [],
  images: 0,
  usable: 0,
  bad: [],
  duplicates: [],
  sizes: null,
  formats: {},
  colourModes: {},
  bitDepths: {},
  withAlpha: 0,
  exifRotated: 0,
  smallClasses: [],
  suggestedClassWeights: {},
};

describe('the dataset store', () => {
  it('sweeps what a crashed process left in .incoming, but not an upload arriving now', async () => {
    const dataDir = tempDir('dataset-store');
    try {
      const incoming = path.join(dataDir, 'uploads', '.incoming');
      mkdirSync(path.join(incoming, 'crashed', 'cats'), { recursive: true });
      writeFileSync(path.join(incoming, 'crashed.tar.gz'), 'half');
      mkdirSync(path.join(incoming, 'arriving'), { recursive: true });
      const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
      for (const name of ['crashed', 'crashed.tar.gz']) utimesSync(path.join(incoming, name), twoHoursAgo, twoHoursAgo);
      const store = new DatasetStore(dataDir, new LocalArtifactStore(path.join(dataDir, 'artifacts')), ledger, LIMITS);
      assert.deepEqual((await store.sweepIncoming(3600_000)).sort(), ['crashed', 'crashed.tar.gz']);
      assert.deepEqual(readdirSync(incoming), ['arriving']);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("moves an earlier release's records from DATA_DIR/uploads into the artifact store, once, leaving what does not parse", async () => {
    const dataDir = tempDir('dataset-records');
    try {
      const uploads = path.join(dataDir, 'uploads');
      mkdirSync(path.join(uploads, ID, 'cats'), { recursive: true });
      const record = {
        id: ID,
        owner: 'ada',
        name: 'pets.tar.gz',
        createdAt: '2026-11-01T00:00:00.000Z',
        archiveBytes: 10,
        files: 2,
        unpackedBytes: 20,
        classNames: ['cats', 'dogs'],
        images: 2,
        preflight: emptyPreflight,
      };
      writeFileSync(path.join(uploads, `${ID}.json`), JSON.stringify(record));
      writeFileSync(path.join(uploads, `${OTHER_ID}.json`), '{"not":"a rec');
      const artifacts = new LocalArtifactStore(path.join(dataDir, 'artifacts'));
      const store = new DatasetStore(dataDir, artifacts, ledger, LIMITS);
      assert.deepEqual(await store.migrateRecords(), [ID]);
      assert.deepEqual(await store.migrateRecords(), [], 'once');
      assert.deepEqual(readdirSync(uploads).sort(), [`${OTHER_ID}.json`, ID].sort());
      await artifacts.write(`uploads/${OTHER_ID}.json`, '{"not":"a record"}');
      assert.deepEqual(await store.list({ owner: 'ada', admin: false }), [], "not in ada's index yet");
      assert.deepEqual(await store.indexOwners(), [ID], 'a record that does not parse is passed over');
      assert.deepEqual(await store.indexOwners(), [], 'once');
      await artifacts.remove(`uploads/${OTHER_ID}.json`);
      assert.deepEqual(await store.get({ owner: 'ada', admin: false }, ID), record);
      assert.equal(await store.get({ owner: 'bob', admin: false }, ID), null, "another owner's upload does not exist for them");
      assert.deepEqual(
        (await store.list({ owner: 'ada', admin: false })).map((r) => r.id),
        [ID],
      );
      assert.deepEqual(await store.list({ owner: 'bob', admin: false }), []);
      assert.deepEqual(
        (await store.list({ owner: 'admin', admin: true })).map((r) => r.id),
        [ID],
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("lists an owner's uploads by reading their records only", async () => {
    const dataDir = tempDir('dataset-store-index');
    try {
      const reads: string[] = [];
      const artifacts = new (class extends LocalArtifactStore {
        override read(key: string) {
          reads.push(key);
          return super.read(key);
        }
      })(path.join(dataDir, 'artifacts'));
      const ids = Array.from({ length: 4 }, (_, i) => `3b241101-e2bb-4255-8caf-4136c566a96${i}`);
      for (const [i, id] of ids.entries()) {
        const record = { id, owner: i < 3 ? 'ada' : 'bob', name: `set-${i}`, createdAt: `2026-11-0${i + 1}T00:00:00.000Z` };
        const full = { ...record, archiveBytes: 1, files: 1, unpackedBytes: 1, classNames: ['a'], images: 1, preflight: emptyPreflight };
        await artifacts.write(`uploads/${id}.json`, JSON.stringify(full));
      }
      const store = new DatasetStore(dataDir, artifacts, ledger, LIMITS);
      assert.deepEqual((await store.indexOwners()).sort(), [...ids].sort());
      reads.length = 0;
      assert.deepEqual(
        (await store.list({ owner: 'bob', admin: false })).map((r) => r.id),
        [ids[3]],
      );
      assert.deepEqual(reads, [`uploads/${ids[3]}.json`], "bob's listing reads bob's record only");
      assert.deepEqual(
        (await store.list({ owner: 'ada', admin: false })).map((r) => r.name),
        ['set-2', 'set-1', 'set-0'],
      );
      await store.remove((await store.get({ owner: 'ada', admin: false }, ids[1]))!);
      assert.deepEqual(
        (await store.list({ owner: 'ada', admin: false })).map((r) => r.name),
        ['set-2', 'set-0'],
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('uploads against the quota and the clock', () => {
  const ada = { owner: 'ada', admin: false };
  let dataDir: string;
  let archive: string;
  let unpackedBytes: number;
  before(async () => {
    dataDir = tempDir('dataset-quota');
    await writeMessyDataset(path.join(dataDir, 'src', 'pets'));
    archive = path.join(dataDir, 'pets.tar.gz');
    await tar.c({ gzip: true, file: archive, cwd: path.join(dataDir, 'src') }, ['pets']);
    unpackedBytes = readdirSync(path.join(dataDir, 'src', 'pets'), { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .reduce((sum, entry) => sum + readFileSize(path.join(entry.parentPath, entry.name)), 0);
  });
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  const storeWith = (limits: Partial<typeof LIMITS>) =>
    new DatasetStore(dataDir, new LocalArtifactStore(path.join(dataDir, 'artifacts')), ledger, {
      ...LIMITS,
      maxArchiveBytes: 10 * 1024 ** 2,
      maxFiles: 1000,
      maxUnpackedBytes: 10 * 1024 ** 2,
      quotaBytes: Math.floor(unpackedBytes * 1.5),
      ...limits,
    });

  it('reserves the bytes an archive unpacks to before writing them: of four at once within room for one, one is taken', async () => {
    const store = storeWith({});
    try {
      const outcomes = await Promise.allSettled(
        [0, 1, 2, 3].map((n) => store.create(ada, createReadStream(archive), 'tar.gz', `pets-${n}`, async () => emptyPreflight)),
      );
      const taken = outcomes.filter((o) => o.status === 'fulfilled');
      const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as Error] : []));
      assert.equal(taken.length, 1, JSON.stringify(refused.map((e) => e.message)));
      assert.ok(
        refused.every((e) => e instanceof TooLargeError && /QUOTA_DATASET_BYTES/.test(e.message)),
        refused.map(String).join('; '),
      );
      assert.equal(await store.quota.held('ada'), unpackedBytes, 'the ledger holds the one upload, and no reservation is left');
      assert.deepEqual(readdirSync(path.join(dataDir, 'uploads', '.incoming')), [], 'the refused ones left nothing');
      await assert.rejects(
        store.create(ada, createReadStream(archive), 'tar.gz', 'more', async () => emptyPreflight),
        TooLargeError,
      );
      const [record] = await store.list(ada);
      await store.remove(record);
      assert.equal(existsSync(path.join(dataDir, 'uploads', record.id)), false, 'gone from its place once remove returns');
      assert.equal(await store.quota.held('ada'), 0, 'and its bytes are free again');
      await store.close();
      assert.deepEqual(readdirSync(path.join(dataDir, 'uploads', '.trash')), [], 'its files went in the background');
    } finally {
      await store.close();
    }
  });

  it('cuts off an upload that sends less than the floor over a window, and keeps nothing of it', async () => {
    const store = storeWith({ minBytesPerSecond: 64 * 1024, rateWindowMs: 300 });
    try {
      const trickle = new PassThrough();
      trickle.write(Buffer.alloc(1024));
      const timer = setInterval(() => trickle.write(Buffer.alloc(16)), 100);
      await assert.rejects(
        store.create(ada, trickle, 'tar.gz', 'slow', async () => emptyPreflight).finally(() => clearInterval(timer)),
        (error: Error) => error instanceof SlowSenderError && /UPLOAD_MIN_BYTES_PER_SECOND/.test(error.message),
      );
      assert.deepEqual(readdirSync(path.join(dataDir, 'uploads', '.incoming')), []);
    } finally {
      await store.close();
    }
  });

  it("builds an owner's ledger from their records the first time (uploads of earlier releases count)", async () => {
    const artifacts = new LocalArtifactStore(path.join(dataDir, 'artifacts-earlier'));
    const id = '3b241101-e2bb-4255-8caf-4136c566a9aa';
    const record = { id, owner: 'cleo', name: 'old', createdAt: '2026-11-01T00:00:00.000Z', archiveBytes: 1, files: 1 };
    await artifacts.write(
      `uploads/${id}.json`,
      JSON.stringify({ ...record, unpackedBytes: 700, classNames: ['a'], images: 1, preflight: emptyPreflight }),
    );
    const store = new DatasetStore(dataDir, artifacts, ledger, { ...LIMITS, quotaBytes: 1000 });
    await store.indexOwners();
    const cleo = { owner: 'cleo', admin: false };
    assert.equal(await store.quota.held('cleo'), 700);
    await assert.rejects(store.quota.reserve(cleo, 'next', 301, 'this'), /needs 301 bytes; your datasets hold 700 of your quota of 1000/);
    await store.quota.reserve(cleo, 'next', 300, 'this');
    await store.quota.release('cleo', 'next');
    assert.equal(await store.quota.held('cleo'), 700);
  });
});

describe("an owner's dataset ledger built from their records", () => {
  it('leaves out an upload deleted while the build reads the records, and counts the rest', async () => {
    const quota: DatasetQuota = new DatasetQuota(redis, prefix, 1000, async () => {
      const records = [
        { id: 'kept', unpackedBytes: 300 },
        { id: 'deleted', unpackedBytes: 400 },
      ];
      // Read, and then one of them is deleted before the build writes what was read.
      await quota.release('dora', 'deleted');
      return records;
    });
    assert.equal(await quota.held('dora'), 300);
    const fields = await redis.hgetall(redisKeys(prefix).datasetBytes('dora'));
    assert.deepEqual(Object.keys(fields).sort(), ['.complete', 'kept'], 'no mark of the delete is left once the ledger is complete');
    // Complete: a delete now frees the bytes and leaves no mark.
    await quota.release('dora', 'kept');
    assert.equal(await quota.held('dora'), 0);
    assert.deepEqual(Object.keys(await redis.hgetall(redisKeys(prefix).datasetBytes('dora'))), ['.complete']);
  });

  it('builds the ledger of an owner with thousands of uploads in parts, all counted but the deleted', async () => {
    const records = Array.from({ length: 2500 }, (_, i) => ({ id: `upload-${i}`, unpackedBytes: 1 + (i % 7) }));
    const quota: DatasetQuota = new DatasetQuota(redis, prefix, 1e9, async () => {
      await quota.release('finn', 'upload-1700');
      return records;
    });
    const expected = records.reduce((sum, record) => sum + record.unpackedBytes, 0) - records[1700].unpackedBytes;
    assert.equal(await quota.held('finn'), expected);
    assert.equal(await redis.hlen(redisKeys(prefix).datasetBytes('finn')), 2500, 'the uploads but one, and the completion mark');
  });
});

describe("the dataset store's owner index on an S3-compatible store", () => {
  let server: S3Server;
  before(async () => (server = await startS3Server()));
  after(() => server.stop());

  it('lists each owner their own uploads, the admin all', async () => {
    const dataDir = tempDir('dataset-store-s3');
    try {
      const artifacts = await openArtifactStore({ ARTIFACTS_DIR: '/nonexistent', S3_REGION: 'us-east-1', ...server.env('dataset-index') });
      for (const [i, owner] of ['ada', 'bob', 'ada'].entries()) {
        const id = `3b241101-e2bb-4255-8caf-4136c566a97${i}`;
        const record = { id, owner, name: `set-${i}`, createdAt: `2026-11-0${i + 1}T00:00:00.000Z`, archiveBytes: 1, files: 1 };
        await artifacts.write(
          `uploads/${id}.json`,
          JSON.stringify({ ...record, unpackedBytes: 1, classNames: ['a'], images: 1, preflight: emptyPreflight }),
        );
      }
      const store = new DatasetStore(dataDir, artifacts, ledger, LIMITS);
      assert.equal((await store.indexOwners()).length, 3);
      const names = async (owner: string, admin = false) => (await store.list({ owner, admin })).map((r) => r.name);
      assert.deepEqual(await names('ada'), ['set-2', 'set-0']);
      assert.deepEqual(await names('bob'), ['set-1']);
      assert.deepEqual(await names('admin', true), ['set-2', 'set-1', 'set-0']);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
