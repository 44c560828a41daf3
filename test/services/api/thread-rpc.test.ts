import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ThreadRpc } from '../../../services/api/thread-rpc.js';

const settings = { dataDir: '/nonexistent', artifactsDir: '/nonexistent', backend: 'wasm', nativeKernels: false };

describe('ThreadRpc', () => {
  it('answers requests in order, passes errors back, and starts a new thread after one dies', async () => {
    const rpc = new ThreadRpc<{ say?: string; fail?: string; exit?: boolean }, string>(
      new URL('../../helpers/echo.thread.ts', import.meta.url),
      settings,
    );
    try {
      assert.deepEqual(await Promise.all([rpc.call({ say: 'a' }), rpc.call({ say: 'b' })]), ['echo: a', 'echo: b']);
      await assert.rejects(rpc.call({ fail: 'no such image' }), /no such image/);
      await assert.rejects(rpc.call({ exit: true }), /worker thread exited/);
      assert.equal(await rpc.call({ say: 'again' }), 'echo: again');
    } finally {
      await rpc.close();
    }
  });
});
