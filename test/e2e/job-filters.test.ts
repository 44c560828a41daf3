import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import supertest from 'supertest';
import type { JobList } from '../../schemas/job-status.js';
import { testApp } from '../helpers/app.js';
import { freePort } from '../helpers/ports.js';
import { startRedis, stopRedis } from '../helpers/redis-server.js';
import { tempDir } from '../helpers/torch.js';

/** Calls of a command so far, from INFO commandstats (the test's own redis-server: no other client). */
async function calls(redis: { info(section: string): Promise<string> }, command: string): Promise<number> {
  const line = (await redis.info('commandstats')).split('\n').find((l) => l.startsWith(`cmdstat_${command}:`));
  return Number(/calls=(\d+)/.exec(line ?? '')?.[1] ?? 0);
}

const dataset = { type: 'synthetic', numClasses: 2, imagesPerClass: 4, imageSize: 32 };
const JOBS = 5000;

/** Job i's labels: every 500th is the needle; every 3rd is tagged common; every 4th fine-tunes. */
function specOf(i: number) {
  const needle = i % 500 === 7;
  return {
    mode: i % 4 === 0 ? 'fine_tuning' : 'feature_extraction',
    weights: 'random',
    inputSize: 32,
    dataset,
    name: needle ? 'needle in: the haystack' : `job ${i}`,
    tags: [...(needle ? ['rare'] : []), ...(i % 3 === 0 ? ['common'] : [])],
  };
}
const expected = (keep: (i: number) => boolean) => Array.from({ length: JOBS }, (_, i) => i).filter(keep).length;

describe('job filters on 5,000 jobs', () => {
  const dir = tempDir('job-filters');
  let redis: ChildProcess;
  let api: Awaited<ReturnType<typeof testApp>>;
  const http = () => supertest.agent(api.app.server);
  before(async () => {
    const port = await freePort();
    redis = await startRedis(port, dir, ['--appendonly', 'no']);
    api = await testApp('job-filters', dir, { REDIS_URL: `redis://127.0.0.1:${port}`, QUEUE_MAX_WAITING: '10000' });
    for (let start = 0; start < JOBS; start += 50) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, k) => {
          const response = await http()
            .post('/v1/jobs')
            .send(specOf(start + k));
          assert.equal(response.status, 202, response.text);
        }),
      );
    }
  });
  after(async () => {
    await api.close();
    await stopRedis(redis);
    rmSync(dir, { recursive: true, force: true });
  });

  /** The listing, and how many job records it read. */
  async function listing(query: string): Promise<{ list: JobList; reads: number }> {
    const before = await calls(api.redis, 'hgetall');
    const response = await http().get(`/v1/jobs?${query}`);
    assert.equal(response.status, 200, response.text);
    return { list: response.body as JobList, reads: (await calls(api.redis, 'hgetall')) - before };
  }

  it('finds jobs by name and tag reading only the matching ones', async () => {
    const byName = await listing(`name=${encodeURIComponent('needle in: the haystack')}&limit=100`);
    assert.equal(byName.list.total, 10);
    assert.equal(byName.list.items.length, 10);
    assert.ok(byName.list.items.every((job) => (job.spec as { name?: string }).name === 'needle in: the haystack'));
    assert.equal(byName.reads, 10, 'one job record read per match');
    const byTag = await listing('tag=rare&limit=100');
    assert.deepEqual(
      byTag.list.items.map((job) => job.id),
      byName.list.items.map((job) => job.id),
    );
    assert.equal(byTag.reads, 10);
  });

  it('combines name, tag and mode, and pages through the matches', async () => {
    const both = await listing('tag=common&mode=fine_tuning&limit=20&offset=20');
    assert.equal(
      both.list.total,
      expected((i) => i % 3 === 0 && i % 4 === 0),
    );
    assert.equal(both.list.items.length, 20);
    assert.ok(both.list.items.every((job) => job.mode === 'fine_tuning' && (job.spec as { tags: string[] }).tags.includes('common')));
    assert.equal(both.reads, 20, 'only the page is read');
    const rareFineTuning = await listing('tag=rare&mode=fine_tuning');
    assert.equal(
      rareFineTuning.list.total,
      expected((i) => i % 500 === 7 && i % 4 === 0),
    );
    const none = await listing('name=nobody');
    assert.deepEqual([none.list.total, none.reads], [0, 0]);
  });

  it('refuses a malformed filter with 400 naming it', async () => {
    const response = await http().get('/v1/jobs?tag=has%20space');
    assert.equal(response.status, 400);
    assert.deepEqual(
      response.body.errors.map((e: { path: string }) => e.path),
      ['tag'],
    );
  });
});
