// Unpacks one archive on a worker thread of its own: an archive is input, and its worst case must
// cost this thread's bounded heap, never the API process.
import { parentPort, workerData } from 'node:worker_threads';
import { ArchiveError, extractArchive, type ArchivePlan } from './archive.js';
import type { UnpackReply, UnpackRequest } from './unpack.js';

const port = parentPort;
if (!port) throw new Error('unpack.thread.ts runs in a worker thread started by unpack.ts');
const { file, format, destination, limits } = workerData as UnpackRequest;
const send = (reply: UnpackReply) => port.postMessage(reply);

const approve = (plan: ArchivePlan) =>
  new Promise<void>((resolve) => {
    // A refused plan is answered by terminating this thread: only approval comes back.
    port.once('message', () => resolve());
    send({ type: 'plan', plan });
  });

extractArchive(file, format, destination, limits, approve).then(
  (plan) => send({ type: 'done', plan }),
  (error: NodeJS.ErrnoException) =>
    send({ type: 'failed', message: error.message, refused: error instanceof ArchiveError, code: error.code }),
);
