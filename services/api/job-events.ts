import type { Logger } from '../../common/logger.js';
import { redisConnection, type RedisClient } from '../../common/redis-connection.js';
import type { RedisTarget } from '../../schemas/config.js';

/** One entry of BullMQ's event stream about a job: its stream id orders every event of every job. */
export interface QueueEvent {
  id: string;
  event: string;
  jobId: string;
  /** Parsed where BullMQ writes JSON (progress data, a return value); strings otherwise. */
  fields: Record<string, unknown>;
}

/** The events jobs go through, as BullMQ writes them (https://docs.bullmq.io/guide/events). */
const EVENTS = ['waiting', 'active', 'progress', 'stalled', 'completed', 'failed', 'removed'] as const;
const JSON_FIELDS = new Set(['data', 'returnvalue']);
/** A read waits this long for news before asking again; a page of a replay is this many entries. */
const BLOCK_MS = 5000;
const PAGE = 500;
/** After a failed read (Redis away), wait this long before the next. */
const RETRY_MS = 1000;

function parsedField(name: string, value: string): unknown {
  if (!JSON_FIELDS.has(name)) return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

/** Compares two stream ids (`<ms>-<seq>`) as Redis orders them. */
export function compareStreamIds(a: string, b: string): number {
  const [ams, aseq] = a.split('-').map(BigInt);
  const [bms, bseq] = b.split('-').map(BigInt);
  return ams !== bms ? (ams < bms ? -1 : 1) : aseq === bseq ? 0 : aseq < bseq ? -1 : 1;
}

/** An entry of the stream as a job event, or null for one that is not about a job (drained, ...). */
function eventOf(id: string, flat: string[]): QueueEvent | null {
  const fields: Record<string, unknown> = {};
  for (let i = 0; i < flat.length; i += 2) fields[flat[i]] = parsedField(flat[i], flat[i + 1]);
  const { event, jobId, ...rest } = fields;
  if (typeof jobId !== 'string' || !(EVENTS as readonly string[]).includes(String(event))) return null;
  return { id, event: String(event), jobId, fields: rest };
}

/**
 * BullMQ's event stream for the training queue, read once per API process (XREAD on one blocking
 * connection of its own) and handed to whoever listens: per-job listeners (live event streams) and
 * listeners to every job (metrics). Every API process reads every event, so a client may follow a job
 * through any of them. After a Redis outage it goes on from the last entry it read: nothing is skipped.
 */
export class JobEventStream {
  private readonly connection: RedisClient;
  private readonly perJob = new Map<string, Set<(event: QueueEvent) => void>>();
  private readonly everyJob = new Set<(event: QueueEvent) => void>();
  private readonly streamKey: string;
  private running = true;
  private readonly reading: Promise<void>;
  private markClosed: () => void = () => undefined;
  private readonly closed = new Promise<null>((resolve) => (this.markClosed = () => resolve(null)));

  constructor(
    target: RedisTarget,
    private readonly reader: RedisClient,
    /** BullMQ's name for the queue's event stream (its `keys.events`). */
    streamKey: string,
    private readonly log: Logger,
  ) {
    this.streamKey = streamKey;
    // Blocking reads need a connection that waits for Redis (a producer's fails fast).
    this.connection = redisConnection(target, 'worker', log);
    this.reading = this.read();
  }

  private async read(): Promise<void> {
    let lastId = '$';
    while (this.running) {
      try {
        const pending = this.connection.xread('BLOCK', BLOCK_MS, 'STREAMS', this.streamKey, lastId);
        pending.catch(() => undefined); // settled after close, if ever: a read queued while Redis is away may never be
        const streams = await Promise.race([pending, this.closed]);
        for (const [, entries] of streams ?? []) {
          for (const [id, flat] of entries) {
            lastId = id;
            const event = eventOf(id, flat);
            if (event) this.dispatch(event);
          }
        }
      } catch (error) {
        if (!this.running) return;
        this.log.debug({ err: (error as Error).message }, 'job events: reading the stream');
        await Promise.race([new Promise((resolve) => setTimeout(resolve, RETRY_MS).unref()), this.closed]);
      }
    }
  }

  private dispatch(event: QueueEvent): void {
    for (const listener of this.everyJob) listener(event);
    for (const listener of this.perJob.get(event.jobId) ?? []) listener(event);
  }

  /** Calls `listener` with every later event of `jobId` (every job's, for '*'); returns how to stop. */
  subscribe(jobId: string, listener: (event: QueueEvent) => void): () => void {
    if (jobId === '*') {
      this.everyJob.add(listener);
      return () => this.everyJob.delete(listener);
    }
    const listeners = this.perJob.get(jobId) ?? new Set();
    listeners.add(listener);
    this.perJob.set(jobId, listeners);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0) this.perJob.delete(jobId);
    };
  }

  /** The newest id in the stream ('0-0' when empty): what a snapshot taken now already reflects. */
  async latestId(): Promise<string> {
    const [newest] = await this.reader.xrevrange(this.streamKey, '+', '-', 'COUNT', 1);
    return newest?.[0] ?? '0-0';
  }

  /**
   * The job's events after `afterId`, oldest first, read from the stream in pages; null when the
   * stream no longer reaches back that far (BullMQ trims it), so the events in between are lost.
   */
  async replay(jobId: string, afterId: string, maxEntries: number): Promise<QueueEvent[] | null> {
    const [oldest] = await this.reader.xrange(this.streamKey, '-', '+', 'COUNT', 1);
    if (oldest && compareStreamIds(afterId, oldest[0]) < 0) return null;
    const found: QueueEvent[] = [];
    let start = `(${afterId}`;
    for (let read = 0; read < maxEntries; read += PAGE) {
      const entries = await this.reader.xrange(this.streamKey, start, '+', 'COUNT', PAGE);
      for (const [id, flat] of entries) {
        const event = eventOf(id, flat);
        if (event?.jobId === jobId) found.push(event);
      }
      if (entries.length < PAGE) break;
      start = `(${entries[entries.length - 1][0]}`;
    }
    return found;
  }

  /** Stops reading at once, even while Redis is away. */
  async close(): Promise<void> {
    this.running = false;
    this.markClosed();
    this.connection.disconnect();
    await this.reading;
  }
}
