import type { Caller } from '../../schemas/auth.js';
import type { ModelConfig, ModelSummary } from '../../schemas/model.js';
import { ThreadRpc, type ThreadLimits } from './thread-rpc.js';
import type { ThreadSettings } from './thread-protocol.js';

/** There are few distinct model configs: keep their summaries. */
const CACHE_ENTRIES = 64;

/** Summaries of model configs, computed on a worker thread and cached. */
export class ModelInspector {
  private readonly thread: ThreadRpc<ModelConfig, ModelSummary>;
  private readonly cache = new Map<string, Promise<ModelSummary>>();

  constructor(settings: ThreadSettings, limits: ThreadLimits) {
    this.thread = new ThreadRpc(new URL('./threads/summary.thread.ts', import.meta.url), settings, limits);
  }

  summary(config: ModelConfig, caller: Caller): Promise<ModelSummary> {
    const key = JSON.stringify(config);
    let result = this.cache.get(key);
    if (!result) {
      result = this.thread.call(config, caller);
      result.catch(() => this.cache.delete(key));
      this.cache.set(key, result);
      const oldest = this.cache.keys().next();
      if (this.cache.size > CACHE_ENTRIES && !oldest.done) this.cache.delete(oldest.value);
    }
    return result;
  }

  close(): Promise<void> {
    return this.thread.close();
  }
}
