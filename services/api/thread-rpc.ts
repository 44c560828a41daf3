import path from 'node:path';
import type { MessagePort, Worker } from 'node:worker_threads';
import { startModuleThread } from '../../common/module-thread.js';
import { SharedCapacity, type Release } from '../../common/shared-capacity.js';
import type { Caller } from '../../schemas/auth.js';
import type { ThreadSettings } from './thread-protocol.js';

/** A request took too long, or the thread stopped under it: retry later (503). */
export class ThreadBusyError extends Error {}

export interface ThreadLimits {
  /** Requests waiting or running at once, all owners (503 past it), each owner at most its share (429). */
  maxPending: number;
  /** A request running longer stops the thread (and fails what waits behind it); the next call starts a new one. */
  timeoutMs: number;
  /** The fraction of maxPending one owner may hold. */
  ownerShare: number;
}

/** The thread's own JS heap; decoded images and wasm memory live outside it. */
const THREAD_HEAP_MB = 1024;

/** A place in the thread's queue, taken before the work's input arrives (a prediction's images, say). */
export interface ThreadTicket<Request, Response> {
  send(request: Request): Promise<Response>;
  release: Release;
}

/**
 * Request/response over one worker thread running a TypeScript module, so heavy tensor work stays
 * off the API's event loop. The thread module answers `{ id, result }` or `{ id, error }`.
 */
export class ThreadRpc<Request, Response> {
  private worker?: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (r: Response) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly places: SharedCapacity;

  constructor(
    private readonly entry: URL,
    private readonly settings: ThreadSettings,
    private readonly limits: ThreadLimits,
  ) {
    this.places = new SharedCapacity(
      `requests queued for its ${path.basename(entry.pathname, '.thread.ts')} thread`,
      limits.maxPending,
      limits.ownerShare,
    );
  }

  /** Takes a place in the queue for the caller (503 when the queue is full, 429 past the caller's share). */
  reserve(caller: Caller): ThreadTicket<Request, Response> {
    const release = this.places.acquire(caller);
    return { send: (request) => this.send(request), release };
  }

  async call(request: Request, caller: Caller): Promise<Response> {
    const ticket = this.reserve(caller);
    try {
      return await ticket.send(request);
    } finally {
      ticket.release();
    }
  }

  private send(request: Request): Promise<Response> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      // Requests run one after another, so the clock of each starts when it is sent: a request's
      // budget covers those queued before it. The thread is stopped before its callers hear of it,
      // so what they clean up (a synthetic set) is no longer being written.
      const timer = setTimeout(
        () => {
          if (this.worker === worker) this.worker = undefined;
          const waiting = this.takeAll();
          const error = new ThreadBusyError(`the work took longer than ${this.limits.timeoutMs / 1000} s; retry later`);
          void worker.terminate().finally(() => waiting.forEach((waiter) => waiter.reject(error)));
        },
        this.limits.timeoutMs * (this.pending.size + 1),
      );
      this.pending.set(id, { resolve, reject, timer });
      worker.postMessage({ id, request });
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = startModuleThread(this.entry, this.settings, { maxOldGenerationSizeMb: THREAD_HEAP_MB });
    worker.on('message', ({ id, result, error }: { id: number; result?: Response; error?: string }) => {
      const waiter = this.pending.get(id);
      this.pending.delete(id);
      clearTimeout(waiter?.timer);
      if (error !== undefined) waiter?.reject(new Error(error));
      else waiter?.resolve(result as Response);
    });
    worker.on('error', (error) => this.failAll(error));
    worker.on('exit', () => {
      if (this.worker !== worker) return; // replaced after a timeout: its callers were answered then
      this.worker = undefined;
      this.failAll(new Error('worker thread exited'));
    });
    this.worker = worker;
    return worker;
  }

  /** Every request waiting now, out of the queue and with its timer stopped. */
  private takeAll() {
    const waiting = [...this.pending.values()];
    for (const waiter of waiting) clearTimeout(waiter.timer);
    this.pending.clear();
    return waiting;
  }

  private failAll(error: Error) {
    for (const waiter of this.takeAll()) waiter.reject(error);
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
  }
}

/** The thread side: answers every request with `handle`, errors as messages. */
export function serveThreadRpc<Request, Response>(port: MessagePort | null, handle: (request: Request) => Promise<Response>): void {
  if (!port) throw new Error('serveThreadRpc runs in a worker thread started by ThreadRpc');
  // One request at a time, in arrival order: tensor work would not overlap on one thread anyway.
  let queue = Promise.resolve();
  port.on('message', ({ id, request }: { id: number; request: Request }) => {
    queue = queue.then(async () => {
      try {
        port.postMessage({ id, result: await handle(request) });
      } catch (error) {
        port.postMessage({ id, error: (error as Error).message });
      }
    });
  });
}
