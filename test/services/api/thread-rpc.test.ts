import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FairShareError, UnavailableError } from '../../../common/errors.js';
import { ThreadBusyError, ThreadRpc } from '../../../services/api/thread-rpc.js';

const settings = {
  dataDir: '/nonexistent',
  artifacts: { ARTIFACTS_DIR: '/nonexistent', S3_REGION: 'us-east-1' },
  backend: 'wasm' as const,
  nativeKernels: false,
};
const ECHO = new URL('../../helpers/echo.thread.ts', import.meta.url);
const ada = { owner: 'ada', admin: false };
const bob = { owner: 'bob', admin: false };
const admin = { owner: 'admin', admin: true };

describe('ThreadRpc', () => {
  it('answers requests in order, passes errors back, and starts a new thread after one dies', async () => {
    const rpc = new ThreadRpc<{ say?: string; fail?: string; exit?: boolean }, string>(ECHO, settings, {
      maxPending: 16,
      timeoutMs: 120_000,
      ownerShare: 1,
    });
    try {
      assert.deepEqual(await Promise.all([rpc.call({ say: 'a' }, ada), rpc.call({ say: 'b' }, ada)]), ['echo: a', 'echo: b']);
      await assert.rejects(rpc.call({ fail: 'no such image' }, ada), /no such image/);
      await assert.rejects(rpc.call({ exit: true }, ada), /worker thread exited/);
      assert.equal(await rpc.call({ say: 'again' }, ada), 'echo: again');
    } finally {
      await rpc.close();
    }
  });

  it('refuses requests past its queue bound, and stops a thread whose request overruns its time', async () => {
    const rpc = new ThreadRpc<{ say?: string; hang?: boolean }, string>(ECHO, settings, { maxPending: 2, timeoutMs: 3000, ownerShare: 1 });
    try {
      const stuck = rpc.call({ hang: true }, ada);
      const behind = rpc.call({ say: 'behind the stuck one' }, ada);
      const settled = Promise.allSettled([stuck, behind]);
      await assert.rejects(rpc.call({ say: 'one too many' }, ada), UnavailableError);
      const [first, second] = await settled;
      assert.ok(first.status === 'rejected' && first.reason instanceof ThreadBusyError);
      assert.match(String(first.status === 'rejected' && first.reason.message), /took longer than 3 s/);
      assert.ok(second.status === 'rejected' && second.reason instanceof ThreadBusyError, 'what waited behind it fails too');
      assert.equal(await rpc.call({ say: 'fresh thread' }, ada), 'echo: fresh thread');
    } finally {
      await rpc.close();
    }
  });

  it('gives each owner a share of its queue: one owner past it is refused while another still gets a place, and the admin has no share', async () => {
    const rpc = new ThreadRpc<{ say?: string; hang?: boolean }, string>(ECHO, settings, {
      maxPending: 4,
      timeoutMs: 120_000,
      ownerShare: 0.25,
    });
    try {
      const held = rpc.reserve(ada);
      assert.throws(
        () => rpc.reserve(ada),
        (error: Error) => error instanceof FairShareError && error.retryAfterSeconds > 0,
      );
      await assert.rejects(rpc.call({ say: 'ada again' }, ada), FairShareError);
      assert.equal(await rpc.call({ say: 'bob' }, bob), 'echo: bob', 'another owner is served while ada holds her share');
      const adminPlaces = [rpc.reserve(admin), rpc.reserve(admin), rpc.reserve(admin)];
      assert.throws(() => rpc.reserve(bob), UnavailableError, 'the queue as a whole is full: 503 for everyone');
      held.release();
      held.release(); // given back once, however often it is called
      adminPlaces.forEach((place) => place.release());
      const again = rpc.reserve(ada);
      assert.throws(() => rpc.reserve(ada), FairShareError, 'her one place came back, and only one');
      assert.equal(await again.send({ say: 'ada' }), 'echo: ada');
      again.release();
    } finally {
      await rpc.close();
    }
  });
});
