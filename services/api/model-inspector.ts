import { Worker } from 'node:worker_threads';
import type { ModelConfig } from '../../workers/model/resnet50.js';
import type { ModelSummary } from '../../workers/model/summary.js';

const CACHE_ENTRIES = 64;

/** Summaries of model configs, computed on a worker thread and cached (there are few distinct configs). */
export class ModelInspector {
  private worker?: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (s: ModelSummary) => void; reject: (e: Error) => void }>();
  private readonly cache = new Map<string, Promise<ModelSummary>>();

  summary(config: ModelConfig): Promise<ModelSummary> {
    const key = JSON.stringify(config);
    let result = this.cache.get(key);
    if (!result) {
      result = this.compute(config);
      result.catch(() => this.cache.delete(key));
      this.cache.set(key, result);
      if (this.cache.size > CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    }
    return result;
  }

  private compute(config: ModelConfig): Promise<ModelSummary> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, config });
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // Worker threads do not inherit tsx's loader hooks on Node 20: register them inside the thread.
    const entry = new URL('../../workers/model/summary.thread.ts', import.meta.url).href;
    const bootstrap = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(entry)}); })`;
    const worker = new Worker(bootstrap, { eval: true });
    worker.on('message', ({ id, summary, error }: { id: number; summary?: ModelSummary; error?: string }) => {
      const waiter = this.pending.get(id);
      this.pending.delete(id);
      if (error) waiter?.reject(new Error(error));
      else waiter?.resolve(summary!);
    });
    worker.on('error', (error) => this.failAll(error));
    worker.on('exit', () => {
      this.worker = undefined;
      this.failAll(new Error('model inspector thread exited'));
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
