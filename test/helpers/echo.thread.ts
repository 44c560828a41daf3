// A worker thread for the ThreadRpc tests: echoes, fails on request, or dies.
import { parentPort } from 'node:worker_threads';
import { serveThreadRpc } from '../../services/api/thread-rpc.js';

serveThreadRpc<{ say?: string; fail?: string; exit?: boolean }, string>(parentPort, async ({ say, fail, exit }) => {
  if (exit) process.exit(3);
  if (fail) throw new Error(fail);
  return `echo: ${say}`;
});
