import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ThreadBusyError, ThreadRpc } from '../../../services/api/thread-rpc.js';

const settings = {
  dataDir: '/nonexistent',
  artifacts: { ARTIFACTS_DIR: '/nonexistent', S3_REGION: 'us-east-1' },
  backend: 'wasm',
  nativeKernels: false,
};

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

  it('refuses requests past its queue bound, and stops a thread whose request overruns its time', async () => {
    const rpc = new ThreadRpc<{ say?: string; hang?: boolean }, string>(
      new URL('../../helpers/echo.thread.ts', import.meta.url),
      settings,
      {
        maxPending: 2,
        timeoutMs: 3000,
      },
    );
    try {
      const stuck = rpc.call({ hang: true });
      const behind = rpc.call({ say: 'behind the stuck one' });
      const settled = Promise.allSettled([stuck, behind]);
      await assert.rejects(rpc.call({ say: 'one too many' }), ThreadBusyError);
      const [first, second] = await settled;
      assert.ok(first.status === 'rejected' && first.reason instanceof ThreadBusyError);
      assert.match(String(first.status === 'rejected' && first.reason.message), /took longer than 3 s/);
      assert.ok(second.status === 'rejected' && second.reason instanceof ThreadBusyError, 'what waited behind it fails too');
      assert.equal(await rpc.call({ say: 'fresh thread' }), 'echo: fresh thread');
    } finally {
      await rpc.close();
    }
  });
});
