import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { LocalArtifactStore, readJson } from '../../common/artifact-store.js';
import { tempDir } from '../helpers/torch.js';

describe('the local artifact store', () => {
  const root = tempDir('store');
  const store = new LocalArtifactStore(root);
  after(() => rmSync(root, { recursive: true, force: true }));

  it('writes atomically, leaving no staging file behind', async () => {
    await store.write('a/b/c.json', '{"x":1}');
    await store.write('a/b/c.json', '{"x":2}');
    assert.equal((await store.read('a/b/c.json')).toString(), '{"x":2}');
    assert.deepEqual(readdirSync(path.join(root, 'a/b')), ['c.json']);
  });

  it('refuses keys that climb out of its root', () => {
    assert.throws(() => store.localPath('../outside'), /escapes the store/);
    assert.throws(() => store.localPath('a/../../outside'), /escapes the store/);
  });

  it('lists one level, hides unfinished writes, and answers null or [] for what is absent', async () => {
    writeFileSync(path.join(root, 'a', 'half.partial'), '');
    assert.deepEqual(await store.list('a'), ['b']);
    assert.deepEqual(await store.list('nothing'), []);
    assert.equal(await store.stat('nothing.json'), null);
    assert.equal(await store.stat('a'), null, 'a folder is not an artifact');
  });

  it('parses JSON artifacts with their schema instead of trusting them', async () => {
    const Shape = z.object({ x: z.number() });
    assert.deepEqual(await readJson(store, 'a/b/c.json', Shape), { x: 2 });
    assert.equal(await readJson(store, 'missing.json', Shape), null);
    await store.write('bad.json', '{"x":"two"}');
    await assert.rejects(readJson(store, 'bad.json', Shape), /bad\.json does not match its schema/);
  });
});
