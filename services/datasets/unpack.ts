import type { Worker } from 'node:worker_threads';
import { startModuleThread } from '../../common/module-thread.js';
import { isDiskFull, StorageFullError } from '../../common/errors.js';
import { ArchiveError, type ApprovePlan, type ArchiveLimits, type ArchivePlan } from './archive.js';

export interface UnpackRequest {
  file: string;
  format: 'tar.gz' | 'zip';
  destination: string;
  limits: ArchiveLimits;
}

export type UnpackReply =
  | { type: 'plan'; plan: ArchivePlan }
  | { type: 'done'; plan: ArchivePlan }
  | { type: 'failed'; message: string; refused: boolean; code?: string };

/**
 * The unpacking thread's own heap. Listing 200,000 entries takes a few MiB and node-tar's extraction
 * of paths PATH_BOUNDS allows stays well under this; an archive that needs more is refused (400).
 */
export const UNPACK_HEAP_MB = 256;
/** An archive the limits allow unpacks in minutes (200,000 files: about one); one that takes this long is refused. */
export const UNPACK_TIMEOUT_MS = 30 * 60_000;

/**
 * Lists, checks and extracts archives (archive.ts), each on a worker thread of its own with a bounded
 * heap, terminated when it is done, refused, out of memory or out of time.
 */
export class Unpacker {
  private readonly running = new Set<Worker>();

  constructor(private readonly heapMb = UNPACK_HEAP_MB) {}

  /** `approve` sees what extraction would write before anything is written; its error refuses the archive. */
  unpack(request: UnpackRequest, approve: ApprovePlan): Promise<ArchivePlan> {
    const thread = startModuleThread(new URL('./unpack.thread.ts', import.meta.url), request, { maxOldGenerationSizeMb: this.heapMb });
    this.running.add(thread);
    return new Promise<ArchivePlan>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new ArchiveError(`unpacking took longer than ${UNPACK_TIMEOUT_MS / 60_000} minutes`)),
        UNPACK_TIMEOUT_MS,
      );
      const settle = (outcome: () => void) => {
        clearTimeout(timer);
        outcome();
      };
      thread.on('message', (reply: UnpackReply) => {
        if (reply.type === 'plan') {
          approve(reply.plan).then(
            () => thread.postMessage('approved'),
            (error: Error) => settle(() => reject(error)),
          );
        } else if (reply.type === 'done') settle(() => resolve(reply.plan));
        else settle(() => reject(failureOf(reply)));
      });
      thread.on('error', (error: NodeJS.ErrnoException) =>
        settle(() =>
          reject(
            error.code === 'ERR_WORKER_OUT_OF_MEMORY'
              ? new ArchiveError(`unpacking this archive needs more than ${this.heapMb} MiB of memory`)
              : error,
          ),
        ),
      );
      thread.on('exit', () => settle(() => reject(new Error('the unpacking thread stopped'))));
    }).finally(async () => {
      this.running.delete(thread);
      await thread.terminate();
    });
  }

  /** Stops every unpacking thread (the API is closing); their callers remove what they wrote. */
  async close(): Promise<void> {
    await Promise.all([...this.running].map((thread) => thread.terminate()));
  }
}

function failureOf({ message, refused, code }: Extract<UnpackReply, { type: 'failed' }>): Error {
  if (refused) return new ArchiveError(message);
  if (isDiskFull({ code })) return new StorageFullError('the API host has no room left to unpack this archive');
  return Object.assign(new Error(message), { code });
}
