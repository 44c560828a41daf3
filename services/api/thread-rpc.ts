import { Worker, type MessagePort, type TransferListItem } from 'node:worker_threads';
import type { ThreadSettings } from './thread-protocol.js';

/**
 * Request/response over one worker thread running a TypeScript module, so heavy tensor work stays
 * off the API's event loop. The thread module answers `{ id, result }` or `{ id, error }`.
 */
export class ThreadRpc<Request, Response> {
  private worker?: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (r: Response) => void; reject: (e: Error) => void }>();

  constructor(
    private readonly entry: URL,
    private readonly settings: ThreadSettings,
  ) {}

  call(request: Request, transfer: TransferListItem[] = []): Promise<Response> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, request }, transfer);
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // Worker threads do not inherit tsx's loader hooks on Node 20: register them inside the thread.
    const bootstrap = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(this.entry.href)}); })`;
    const worker = new Worker(bootstrap, { eval: true, env: process.env, workerData: this.settings });
    worker.on('message', ({ id, result, error }: { id: number; result?: Response; error?: string }) => {
      const waiter = this.pending.get(id);
      this.pending.delete(id);
      if (error !== undefined) waiter?.reject(new Error(error));
      else waiter?.resolve(result as Response);
    });
    worker.on('error', (error) => this.failAll(error));
    worker.on('exit', () => {
      this.worker = undefined;
      this.failAll(new Error('worker thread exited'));
    });
    this.worker = worker;
    return worker;
  }

  private failAll(error: Error) {
    for (const waiter of this.pending.values()) waiter.reject(error);
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
