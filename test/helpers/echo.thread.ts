// A worker thread for the ThreadRpc tests: echoes, fails on request, hangs, or dies.
import { parentPort } from 'node:worker_threads';
import { serveThreadRpc } from '../../services/api/thread-rpc.js';

serveThreadRpc<{ say?: string; fail?: string; exit?: boolean; hang?: boolean }, string>(parentPort, async ({ say, fail, exit, hang }) => {
  if (exit) process.exit(3);
  if (hang) await new Promise(() => undefined);
  if (fail) throw new Error(fail);
  return `echo: ${say}`;
});
