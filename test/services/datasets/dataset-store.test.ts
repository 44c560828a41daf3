import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { LocalArtifactStore } from '../../../common/artifact-store.js';
import { openArtifactStore } from '../../../common/open-artifact-store.js';
import { createLogger } from '../../../common/logger.js';
import { redisConnection, scanKeys } from '../../../common/queues.js';
import { DatasetStore } from '../../../services/datasets/dataset-store.js';
import { startS3Server, type S3Server } from '../../helpers/s3-server.js';
import { tempDir } from '../../helpers/torch.js';

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
after(async () => {
  for (const key of await scanKeys(redis, `${prefix}:*`)) await redis.del(key);
  await redis.quit();
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
