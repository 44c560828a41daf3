import type { ModelConfig } from '../../workers/model/resnet50.js';
import type { ModelSummary } from '../../workers/model/summary.js';
import { ThreadRpc } from './thread-rpc.js';

const CACHE_ENTRIES = 64;

/** Summaries of model configs, computed on a worker thread and cached (there are few distinct configs). */
export class ModelInspector {
  private readonly thread = new ThreadRpc<ModelConfig, ModelSummary>(new URL('../../workers/model/summary.thread.ts', import.meta.url));
  private readonly cache = new Map<string, Promise<ModelSummary>>();

  summary(config: ModelConfig): Promise<ModelSummary> {
    const key = JSON.stringify(config);
    let result = this.cache.get(key);
    if (!result) {
      result = this.thread.call(config);
      result.catch(() => this.cache.delete(key));
      this.cache.set(key, result);
      if (this.cache.size > CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    }
    return result;
  }

  close(): Promise<void> {
    return this.thread.close();
  }
}
