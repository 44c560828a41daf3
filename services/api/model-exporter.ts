import type { ExportRequest } from '../../schemas/artifacts.js';
import type { ModelExporter } from '../jobs/downloads.js';
import { ThreadRpc } from './thread-rpc.js';
import type { ThreadSettings } from './thread-protocol.js';

/** Exports run one at a time on a thread of their own (a few seconds each); a request for one already running joins it. */
export class ThreadModelExporter implements ModelExporter {
  private readonly thread: ThreadRpc<ExportRequest, void>;
  private readonly running = new Map<string, Promise<void>>();

  constructor(settings: ThreadSettings) {
    this.thread = new ThreadRpc(new URL('./threads/export.thread.ts', import.meta.url), settings, { maxPending: 8, timeoutMs: 300_000 });
  }

  export(request: ExportRequest): Promise<void> {
    let result = this.running.get(request.key);
    if (!result) {
      result = this.thread.call(request).finally(() => this.running.delete(request.key));
      this.running.set(request.key, result);
    }
    return result;
  }

  close(): Promise<void> {
    return this.thread.close();
  }
}
