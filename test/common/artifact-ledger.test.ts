import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ArtifactLedger } from '../../common/artifact-ledger.js';
import { createLogger } from '../../common/logger.js';
import { redisConnection, scanKeys, whenReady } from '../../common/redis-connection.js';
import { redisKeys } from '../../common/redis-keys.js';

const redis = redisConnection({ REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' }, 'producer', createLogger('api', 'silent'));
let run = 0;
/** A prefix of its own per test: a keyspace as an older release (or a Redis that lost its data) left it. */
const fresh = () => `test-artifact-ledger-${process.pid}-${run++}`;
const removeAll = async (prefix: string) => {
  const keys = await scanKeys(redis, `${prefix}:*`);
  if (keys.length) await redis.del(...keys);
};

describe('the artifact ledger', () => {
  const prefixes: string[] = [];
  const ledgerOn = (prefix: string) => (prefixes.push(prefix), new ArtifactLedger(redis, prefix));
  before(() => whenReady(redis, 5000));
  after(async () => {
    for (const prefix of prefixes) await removeAll(prefix);
    redis.disconnect();
  });

  it("keeps a running total once started: every record and forget moves it by the job's difference", async () => {
    const ledger = ledgerOn(fresh());
    assert.equal(await ledger.addUpTotalOnce(), true, 'started on an empty keyspace');
    assert.equal(await ledger.addUpTotalOnce(), false, 'once');
    await ledger.record('ann', 'j1', 100);
    await ledger.record('bob', 'j2', 50);
    await ledger.record('ann', 'j1', 70);
    assert.equal(await ledger.total(), 120);
    await ledger.forget('ann', 'j1');
    assert.equal(await ledger.total(), 50);
    assert.equal(await ledger.ownerTotal('bob'), 50);
  });

  it("adds up an older release's hashes even when a worker records before the API's first start sums them", async () => {
    const prefix = fresh();
    const keys = redisKeys(prefix);
    // An older release kept the owners' hashes and no total.
    await redis.hset(keys.artifactBytes('ann'), 'old-1', '1000', 'old-2', '2000');
    await redis.hset(keys.artifactBytes('bob'), 'old-3', '400');
    const ledger = ledgerOn(prefix);
    // Workers of the new release measure jobs before an API has added the old hashes up.
    await ledger.record('carl', 'new-1', 30);
    await ledger.record('ann', 'old-1', 1100);
    assert.equal(await redis.exists(keys.artifactBytesTotal), 0, 'no total started from a delta alone');
    assert.equal(await ledger.addUpTotalOnce(), true);
    assert.equal(await ledger.total(), 1100 + 2000 + 400 + 30);
    await ledger.record('bob', 'old-3', 0);
    assert.equal(await ledger.total(), 1100 + 2000 + 30);
  });

  it('answers the total of the owners recorded since, before any sum (a Redis that lost its data)', async () => {
    const ledger = ledgerOn(fresh());
    await ledger.record('ann', 'j1', 300);
    await ledger.record('bob', 'j2', 20);
    await ledger.record('ann', 'j3', 5);
    await ledger.forget('bob', 'j2');
    assert.equal(await ledger.total(), 305);
    assert.equal(await ledger.addUpTotalOnce(), true);
    await ledger.record('bob', 'j4', 1);
    assert.equal(await ledger.total(), 306);
  });
});
