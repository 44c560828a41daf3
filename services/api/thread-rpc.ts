import { Worker, type MessagePort } from 'node:worker_threads';
import type { ThreadSettings } from './thread-protocol.js';

/** The thread has as many requests waiting as it may queue, or one took too long: retry later (503). */
export class ThreadBusyError extends Error {}

export interface ThreadLimits {
  /** Requests waiting or running at once; more are refused at once. */
  maxPending: number;
  /** A request running longer stops the thread (and fails what waits behind it); the next call starts a new one. */
  timeoutMs: number;
}

const DEFAULT_LIMITS: ThreadLimits = { maxPending: 16, timeoutMs: 120_000 };
/** The thread's own JS heap; decoded images and wasm memory live outside it. */
const THREAD_HEAP_MB = 1024;

/**
 * Request/response over one worker thread running a TypeScript module, so heavy tensor work stays
 * off the API's event loop. The thread module answers `{ id, result }` or `{ id, error }`.
 */
export class ThreadRpc<Request, Response> {
  private worker?: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (r: Response) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  constructor(
    private readonly entry: URL,
    private readonly settings: ThreadSettings,
    private readonly limits: ThreadLimits = DEFAULT_LIMITS,
  ) {}

  call(request: Request): Promise<Response> {
    if (this.pending.size >= this.limits.maxPending) {
      return Promise.reject(new ThreadBusyError(`${this.pending.size} requests are already waiting for this work; retry later`));
    }
    const worker = this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      // Requests run one after another, so the clock of each starts when it is sent: a request's
      // budget covers those queued before it.
      const timer = setTimeout(
        () => {
          if (this.worker === worker) this.worker = undefined;
          this.failAll(new ThreadBusyError(`the work took longer than ${this.limits.timeoutMs / 1000} s; retry later`));
          void worker.terminate();
        },
        this.limits.timeoutMs * (this.pending.size + 1),
      );
      this.pending.set(id, { resolve, reject, timer });
      worker.postMessage({ id, request });
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // Worker threads do not inherit tsx's loader hooks on Node 20: register them inside the thread.
    const bootstrap = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(this.entry.href)}); })`;
    const worker = new Worker(bootstrap, {
      eval: true,
      env: process.env,
      workerData: this.settings,
      resourceLimits: { maxOldGenerationSizeMb: THREAD_HEAP_MB },
    });
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

  private failAll(error: Error) {
    for (const waiter of this.pending.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this.pending.clear();
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
