import type { ExportRequest } from '../../schemas/artifacts.js';
import type { Caller } from '../../schemas/auth.js';
import type { ModelExporter } from '../jobs/downloads.js';
import { ThreadRpc, type ThreadLimits } from './thread-rpc.js';
import type { ThreadSettings } from './thread-protocol.js';

/**
 * Exports run one at a time on a thread of their own (a few seconds each); a request for one already
 * running joins it, and only the caller who started it holds a place in the queue.
 */
export class ThreadModelExporter implements ModelExporter {
  private readonly thread: ThreadRpc<ExportRequest, void>;
  private readonly running = new Map<string, Promise<void>>();

  constructor(settings: ThreadSettings, limits: ThreadLimits) {
    this.thread = new ThreadRpc(new URL('./threads/export.thread.ts', import.meta.url), settings, limits);
  }

  export(request: ExportRequest, caller: Caller): Promise<void> {
    let result = this.running.get(request.key);
    if (!result) {
      result = this.thread.call(request, caller).finally(() => this.running.delete(request.key));
      this.running.set(request.key, result);
    }
    return result;
  }

  close(): Promise<void> {
    return this.thread.close();
  }
}
