import type { ExportRequest } from '../../schemas/artifacts.js';
import type { Caller } from '../../schemas/auth.js';
import type { ModelExporter } from '../jobs/checkpoint-downloads.js';
import { ThreadRpc, type ThreadLimits } from './thread-rpc.js';
import type { ThreadSettings } from './thread-protocol.js';

/** How long a failed conversion is remembered for the client that polls for it. */
const FAILURE_MEMORY_MS = 600_000;

/**
 * Exports run one at a time on a thread of their own (a few seconds each); a request for one already
 * running joins it, and only the caller who started it holds a place in the queue.
 */
export class ThreadModelExporter implements ModelExporter {
  private readonly thread: ThreadRpc<ExportRequest, void>;
  private readonly running = new Set<string>();
  /** Conversions that failed lately: the next ask hears why (once), instead of starting the same failure again. */
  private readonly failed = new Map<string, { message: string; at: number }>();

  constructor(settings: ThreadSettings, limits: ThreadLimits) {
    this.thread = new ThreadRpc(new URL('./threads/export.thread.ts', import.meta.url), settings, limits);
  }

  begin(request: ExportRequest, caller: Caller): void {
    const { key } = request;
    if (this.running.has(key)) return;
    const failure = this.failed.get(key);
    this.failed.delete(key);
    if (failure && Date.now() - failure.at < FAILURE_MEMORY_MS) throw new Error(`converting ${key} failed: ${failure.message}`);
    const place = this.thread.reserve(caller);
    this.running.add(key);
    place
      .send(request)
      .catch((error: Error) => this.failed.set(key, { message: error.message, at: Date.now() }))
      .finally(() => {
        place.release();
        this.running.delete(key);
      });
  }

  close(): Promise<void> {
    return this.thread.close();
  }
}
