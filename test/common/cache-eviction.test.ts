import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { LocalArtifactStore } from '../../common/artifact-store.js';
import { entriesToEvict, evictFolderCache, evictStoreCache, IN_USE_MS } from '../../common/cache-eviction.js';
import { tempDir } from '../helpers/torch.js';

const DAY = 24 * 3600_000;
const now = Date.UTC(2026, 10, 28);

describe('cache eviction', () => {
  it('removes what is unused past the age, then the least recently used until the rest fit, never what is in use', () => {
    const entries = [
      { name: 'stale', bytes: 1, usedAt: now - 20 * DAY },
      { name: 'old', bytes: 40, usedAt: now - 5 * DAY },
      { name: 'older', bytes: 40, usedAt: now - 6 * DAY },
      { name: 'recent', bytes: 40, usedAt: now - 2 * DAY },
      { name: 'in-use', bytes: 500, usedAt: now - IN_USE_MS / 2 },
    ];
    assert.deepEqual(entriesToEvict(entries, { maxBytes: 1000, maxAgeMs: 14 * DAY }, now), ['stale']);
    assert.deepEqual(entriesToEvict(entries, { maxBytes: 580, maxAgeMs: 14 * DAY }, now).sort(), ['older', 'stale']);
    assert.deepEqual(
      entriesToEvict(entries, { maxBytes: 100, maxAgeMs: 14 * DAY }, now).sort(),
      ['old', 'older', 'recent', 'stale'],
      'over the bound, only the entry in use stays',
    );
  });

  it('evicts folders of a folder cache and stems of a store cache by their last use', async () => {
    const scratch = tempDir('cache-eviction');
    try {
      const folders = path.join(scratch, 'synthetic');
      for (const [name, ageDays] of [
        ['a', 30],
        ['b', 1.5],
      ] as const) {
        mkdirSync(path.join(folders, name, 'cats'), { recursive: true });
        writeFileSync(path.join(folders, name, 'cats', 'x.png'), 'png');
        const at = new Date(Date.now() - ageDays * DAY);
        utimesSync(path.join(folders, name), at, at);
      }
      assert.deepEqual(await evictFolderCache(folders, { maxBytes: 1e9, maxAgeMs: 14 * DAY }), ['a']);
      assert.deepEqual(readdirSync(folders), ['b']);

      const store = new LocalArtifactStore(path.join(scratch, 'artifacts'));
      for (const [stem, ageDays] of [
        ['k1', 3],
        ['k2', 2],
      ] as const) {
        await store.write(`feature-cache/${stem}.f32`, new Uint8Array(100));
        await store.write(`feature-cache/${stem}.json`, '[]');
        const at = new Date(Date.now() - ageDays * DAY);
        for (const ext of ['f32', 'json']) utimesSync(store.localPath(`feature-cache/${stem}.${ext}`), at, at);
      }
      assert.deepEqual(await evictStoreCache(store, 'feature-cache', { maxBytes: 150, maxAgeMs: 14 * DAY }), ['k1']);
      assert.deepEqual(await store.list('feature-cache'), ['k2.f32', 'k2.json']);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
