import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { z } from 'zod';
import { LocalArtifactStore, readJson, type ArtifactStore } from '../../common/artifact-store.js';
import { openArtifactStore } from '../../common/open-artifact-store.js';
import { startS3Server, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/torch.js';

/** What every store promises, checked on each: the code above the store cannot tell them apart. */
function storeContract(open: () => ArtifactStore) {
  let store: ArtifactStore;
  before(() => {
    store = open();
  });

  it('replaces a key whole, from a string, bytes or a stream of chunks', async () => {
    await store.write('a/b/c.json', '{"x":1}');
    await store.write('a/b/c.json', '{"x":2}');
    assert.equal((await store.read('a/b/c.json')).toString(), '{"x":2}');
    await store.write('a/bytes.bin', new Uint8Array([1, 2, 3]));
    assert.deepEqual([...(await store.read('a/bytes.bin'))], [1, 2, 3]);
    // Larger than one multipart part, of unknown length up front: the S3 store uploads it in parts.
    const chunk = Buffer.alloc(1024 * 1024);
    const chunks = Array.from({ length: 19 }, (_, i) => Buffer.from(chunk.fill(i)));
    await store.write('a/big.bin', chunks);
    const big = await buffer(await store.open('a/big.bin'));
    assert.equal(big.length, 19 * chunk.length);
    assert.ok(big.equals(Buffer.concat(chunks)));
    assert.equal((await store.stat('a/big.bin'))?.size, big.length);
    // As checkpoints stream tensors: views into larger buffers, produced asynchronously.
    const views = chunks.map((whole, i) => whole.subarray(i, i + 1000));
    await store.write(
      'a/views.bin',
      (async function* () {
        for (const view of views) yield await Promise.resolve(view);
      })(),
    );
    assert.ok((await store.read('a/views.bin')).equals(Buffer.concat(views)));
    await store.remove('a/views.bin');
  });

  it('sums the bytes of a key or of everything under a prefix, however deep', async () => {
    const bytes = 7 + 3 + 19 * 1024 * 1024;
    assert.equal(await store.usage('a'), bytes);
    assert.equal(await store.usage('a/b'), 7);
    assert.equal(await store.usage('a/b/c.json'), 7);
    assert.equal(await store.usage('nothing'), 0);
  });

  it('lists one level and answers null or [] for what is absent', async () => {
    assert.deepEqual(await store.list('a'), ['b', 'big.bin', 'bytes.bin']);
    assert.deepEqual(await store.list('a/b'), ['c.json']);
    assert.deepEqual(await store.list('nothing'), []);
    assert.equal(await store.stat('nothing.json'), null);
    assert.equal(await store.stat('a'), null, 'a folder is not an artifact');
    await assert.rejects(store.open('nothing.json'));
  });

  it('refuses keys that climb out of it', async () => {
    for (const key of ['../outside', 'a/../../outside', '/absolute', 'a//b', 'a\\b']) {
      await assert.rejects(store.write(key, 'x'), /escapes the store/, key);
      await assert.rejects(store.stat(key), /escapes the store/, key);
    }
  });

  it('removes a key and everything under it, nothing beside it', async () => {
    await store.write('a/bc', 'sibling with a shared prefix');
    await store.remove('a/b');
    assert.deepEqual(await store.list('a'), ['bc', 'big.bin', 'bytes.bin']);
    await store.remove('a/bytes.bin');
    assert.equal(await store.stat('a/bytes.bin'), null);
    await store.remove('a');
    assert.deepEqual(await store.list('a'), []);
    await store.remove('never-there');
  });

  it('reads back exactly what a recycling write wrote, over a larger file removed for recycling', async () => {
    await store.write('r/old.bin', [Buffer.alloc(6 * 1024 * 1024, 7)], { recycle: true });
    await store.remove('r/old.bin', { recycle: true });
    assert.equal(await store.stat('r/old.bin'), null);
    const smaller = Buffer.alloc(5 * 1024 * 1024, 9);
    await store.write('r/new.bin', [smaller.subarray(0, 1024), smaller.subarray(1024)], { recycle: true });
    assert.ok((await store.read('r/new.bin')).equals(smaller));
    await store.remove('r', { recycle: true });
    assert.deepEqual(await store.list('r'), []);
  });

  it('parses JSON artifacts with their schema instead of trusting them', async () => {
    const Shape = z.object({ x: z.number() });
    await store.write('j/good.json', '{"x":2}');
    assert.deepEqual(await readJson(store, 'j/good.json', Shape), { x: 2 });
    assert.equal(await readJson(store, 'j/missing.json', Shape), null);
    await store.write('j/bad.json', '{"x":"two"}');
    await assert.rejects(readJson(store, 'j/bad.json', Shape), /bad\.json does not match its schema/);
  });
}

describe('the local artifact store', () => {
  const root = tempDir('store');
  after(() => rmSync(root, { recursive: true, force: true }));
  storeContract(() => new LocalArtifactStore(root));

  it('leaves no staging file behind, and hides one a crash left', async () => {
    const store = new LocalArtifactStore(root);
    await store.write('s/c.json', '1');
    await store.write('s/c.json', '2');
    assert.deepEqual(readdirSync(path.join(root, 's')), ['c.json']);
    writeFileSync(path.join(root, 's', 'half.partial'), '');
    assert.deepEqual(await store.list('s'), ['c.json']);
    const failing = (async function* () {
      yield new Uint8Array(10);
      throw new Error('the tensor could not be read');
    })();
    await assert.rejects(store.write('s/c.json', failing), /could not be read/);
    assert.equal((await store.read('s/c.json')).toString(), '2');
    assert.deepEqual(readdirSync(path.join(root, 's')).sort(), ['c.json', 'half.partial']);
  });
});

describe('the local artifact store recycling removed files', () => {
  const root = tempDir('spares');
  after(() => rmSync(root, { recursive: true, force: true }));
  const MiB = 1024 * 1024;
  const spares = () => readdirSync(path.join(root, '.spares')).map((name) => path.join(root, '.spares', name));

  it('writes over a removed file: its blocks, cut to the new length, none of its old bytes', async () => {
    const store = new LocalArtifactStore(root);
    await store.write('job/1/optimizer.bin', [Buffer.alloc(8 * MiB, 1)], { recycle: true });
    const removed = statSync(path.join(root, 'job/1/optimizer.bin')).ino;
    await store.remove('job/1/optimizer.bin', { recycle: true });
    assert.equal(spares().length, 1);
    const fresh = Buffer.alloc(5 * MiB, 2);
    await store.write('job/3/optimizer.bin', [fresh], { recycle: true });
    assert.equal(statSync(path.join(root, 'job/3/optimizer.bin')).ino, removed, 'the same file, renamed');
    assert.ok((await store.read('job/3/optimizer.bin')).equals(fresh));
    assert.deepEqual(spares(), []);
  });

  it('recycles only when both sides ask, only large files, and a few at most', async () => {
    const store = new LocalArtifactStore(root);
    await store.write('k/plain.bin', [Buffer.alloc(8 * MiB)]);
    await store.remove('k/plain.bin');
    await store.write('k/small.bin', [Buffer.alloc(1024)]);
    await store.remove('k/small.bin', { recycle: true });
    assert.deepEqual(spares(), [], 'removed without recycle, or too small to be worth it');
    for (let i = 0; i < 6; i++) {
      await store.write(`k/${i}.bin`, [Buffer.alloc(4 * MiB, i)]);
      await store.remove(`k/${i}.bin`, { recycle: true });
    }
    assert.equal(spares().length, 4);
    const spare = spares()[0];
    await store.write('k/unrecycled.bin', [Buffer.alloc(4 * MiB, 9)]);
    assert.ok(existsSync(spare), 'a write without recycle leaves spares alone');
  });

  it('removes spares older than ten minutes instead of writing over them', async () => {
    const store = new LocalArtifactStore(root);
    const old = new Date(Date.now() - 11 * 60_000);
    for (const spare of spares()) utimesSync(spare, old, old);
    await store.write('k/after.bin', [Buffer.alloc(1024, 3)], { recycle: true });
    assert.deepEqual(spares(), []);
    assert.equal((await store.stat('k/after.bin'))?.size, 1024);
  });
});

describe('the S3 artifact store, on a real S3-compatible server', () => {
  let server: S3Server;
  before(async () => {
    server = await startS3Server();
  });
  after(() => server.stop());
  let store: ArtifactStore;
  before(async () => {
    const env = server.env('under/a/prefix');
    store = await openArtifactStore({ ARTIFACTS_DIR: '/nonexistent', S3_REGION: 'us-east-1', ...env });
  });
  storeContract(() => store);

  it('keeps its objects under the prefix it was given', async () => {
    await store.write('p/q.json', '{}');
    const other = await openArtifactStore({ ARTIFACTS_DIR: '/nonexistent', S3_REGION: 'us-east-1', ...server.env('under') });
    assert.deepEqual(await other.list('a/prefix/p'), ['q.json']);
  });
});
