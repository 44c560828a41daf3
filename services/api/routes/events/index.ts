import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { JOB_LOG_LINES_KEPT } from '../../../../common/queue-facade.js';
import type { SharedCapacity } from '../../../../common/shared-capacity.js';
import type { Caller } from '../../../../schemas/auth.js';
import { FINISHED_STATES, type JobStatus } from '../../../../schemas/job-status.js';
import { WorkerProgress } from '../../../../schemas/queue.js';
import type { JobService } from '../../../jobs/job-service.js';
import { compareStreamIds, type JobEventStream, type QueueEvent } from '../../job-events.js';
import { EventsHeaders, JobParams } from '../jobs/schemas.js';

/** A comment line this often keeps proxies from closing a quiet stream; the job's state is checked then too. */
const HEARTBEAT_MS = 15_000;
/** Most stream entries read back for one resume. */
const REPLAY_MAX_ENTRIES = 50_000;
/**
 * Part numbers of positions no queue event fills (sseEventsOf makes at most three parts of one): the
 * whole status sent in place of a replay, and a job's final state after its last entry's events.
 */
const STATUS_PART = 99;
const FINAL_PART = 9;

interface SseEvent {
  event: string;
  data: unknown;
}

/** Where a client is in the stream: after part `part` of the events of stream entry `id`. */
interface Position {
  id: string;
  part: number;
}

const after = (a: Position, b: Position) => {
  const order = compareStreamIds(a.id, b.id);
  return order > 0 || (order === 0 && a.part > b.part);
};

/** What a client sees of one queue event: progress (and the epoch's metrics when one just ended), or a state change. */
export function sseEventsOf(event: QueueEvent): SseEvent[] {
  if (event.event === 'progress') {
    const progress = WorkerProgress.safeParse(event.fields.data);
    if (!progress.success) return [];
    const { latestMetrics, announces, backend: _backend, skippedFiles, ...rest } = progress.data;
    const events: SseEvent[] = [{ event: 'progress', data: rest }];
    if (announces === 'epoch' && latestMetrics) events.push({ event: 'epoch', data: latestMetrics });
    if (announces === 'skipped') events.push({ event: 'skipped', data: { files: skippedFiles, count: rest.skippedFileCount } });
    return events;
  }
  const states: Record<string, string> = { active: 'running', waiting: 'queued', stalled: 'stalled' };
  return states[event.event] ? [{ event: 'state', data: { state: states[event.event] } }] : [];
}

const finalEvent = (status: JobStatus): SseEvent => ({
  event: 'state',
  data: { state: status.state, failure: status.failure, result: status.result },
});

/** One client's stream of one job: events strictly in stream order, each at most once, from where the client was. */
class JobEventSession {
  private position: Position | null = null;
  private ended = false;
  private live = false;
  private readonly buffered: QueueEvent[] = [];
  private chain = Promise.resolve();
  private readonly unsubscribe: () => void;
  private readonly heartbeat: NodeJS.Timeout;

  constructor(
    private readonly raw: ServerResponse,
    private readonly jobs: JobService,
    private readonly caller: Caller,
    private readonly jobId: string,
    private readonly events: JobEventStream,
    private readonly onEnd: () => void,
  ) {
    // Listen before reading back, so nothing falls between.
    this.unsubscribe = events.subscribe(jobId, (event) => (this.live ? this.enqueue(event) : this.buffered.push(event)));
    this.heartbeat = setInterval(() => {
      raw.write(': keep-alive\n\n');
      this.then(() => this.settle({ id: this.position?.id ?? '0-0', part: 0 }));
    }, HEARTBEAT_MS);
    raw.on('close', () => this.stop());
  }

  /** From the event after `resumeFrom` when Redis still has it, else from the whole status. */
  async start(first: JobStatus, resumeFrom: string | undefined): Promise<void> {
    const [id, part] = resumeFrom ? resumeFrom.split('/') : [];
    const replayed = resumeFrom ? await this.events.replay(this.jobId, id, REPLAY_MAX_ENTRIES) : null;
    if (replayed) {
      this.position = { id, part: Number(part) };
      for (const event of replayed) await this.handle(event);
    } else {
      const latest = await this.events.latestId();
      const status = resumeFrom ? await this.jobs.requireStatus(this.caller, this.jobId) : first;
      this.send({ id: latest, part: 0 }, { event: 'status', data: status });
      this.position = { id: latest, part: STATUS_PART };
      await this.settle(this.position);
    }
    for (const event of this.buffered) this.enqueue(event);
    this.live = true;
    await this.chain;
  }

  private then(work: () => Promise<void>): void {
    this.chain = this.chain.then(work).catch(() => this.stop());
  }

  private enqueue(event: QueueEvent): void {
    this.then(() => this.handle(event));
  }

  private async handle(event: QueueEvent): Promise<void> {
    sseEventsOf(event).forEach((sse, part) => this.send({ id: event.id, part }, sse));
    if (['completed', 'failed', 'removed'].includes(event.event)) await this.settle({ id: event.id, part: FINAL_PART });
  }

  private send(at: Position, { event, data }: SseEvent): void {
    if (this.ended || (this.position && !after(at, this.position))) return;
    this.raw.write(`id: ${at.id}/${at.part}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    this.position = at;
  }

  /** Ends the stream once the job has ended (or is gone), with its final state. */
  private async settle(at: Position): Promise<void> {
    const status = await this.jobs.status(this.caller, this.jobId);
    if (status && !FINISHED_STATES.includes(status.state)) return;
    const next = this.position && !after(at, this.position) ? { id: this.position.id, part: this.position.part + 1 } : at;
    this.send(next, status ? finalEvent(status) : { event: 'state', data: { state: 'removed' } });
    this.stop();
  }

  /** Ends the stream: once the job has ended, or when its state cannot be read (Redis away): the client reconnects with Last-Event-ID. */
  private stop(): void {
    if (this.ended) return;
    this.ended = true;
    this.unsubscribe();
    clearInterval(this.heartbeat);
    this.onEnd();
    this.raw.end();
  }
}

const LogsQuery = z.strictObject({
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
  limit: z.coerce.number().int().min(1).max(1000).default(500),
  follow: z
    .enum(['0', '1', 'true', 'false'])
    .default('0')
    .transform((value) => value === '1' || value === 'true')
    .describe('1: Server-Sent Events, a `line` event per line (its id the line number) until the job ends, then `end`'),
});
const LogsHeaders = z.looseObject({
  'last-event-id': z
    .string()
    .regex(/^\d{1,9}$/, 'a line number this stream sent')
    .optional(),
});
const JobLog = z.object({
  lines: z.array(z.string()).describe(`The worker's lines for the job, oldest first (the last ${JOB_LOG_LINES_KEPT} are kept)`),
  offset: z.number().int(),
  total: z.number().int(),
});
/** How often a followed log is read again. */
const LOG_POLL_MS = 1000;

/** Sends the job's log lines from `from` as they come, until the job has ended and every line is sent. */
async function followLog(raw: ServerResponse, jobs: JobService, caller: Caller, jobId: string, from: number): Promise<void> {
  let next = from;
  let closed = false;
  raw.on('close', () => (closed = true));
  while (!closed) {
    const status = await jobs.requireStatus(caller, jobId);
    const { lines } = await jobs.logs(caller, jobId, next, next + 999);
    for (const line of lines) raw.write(`id: ${next}\nevent: line\ndata: ${JSON.stringify({ index: next++, line })}\n\n`);
    if (FINISHED_STATES.includes(status.state) && lines.length === 0) {
      raw.write(`event: end\ndata: ${JSON.stringify({ state: status.state, lines: next })}\n\n`);
      return;
    }
    if (lines.length === 0) await new Promise((resolve) => setTimeout(resolve, LOG_POLL_MS));
  }
}

/**
 * Takes one of the caller's event streams (429/503 past its share or the capacity) and answers with
 * the stream's headers; the route writes the events. Returns how to give the stream back.
 */
function openEventStream(request: FastifyRequest, reply: FastifyReply, streams: SharedCapacity): () => void {
  const release = streams.acquire(request.caller);
  reply.hijack();
  // Connection is Node's to set: it keeps a stream alive unless the client asked to close.
  reply.raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
    'x-request-id': request.id,
  });
  return release;
}

/** GET /v1/jobs/:id/events: the job as Server-Sent Events, from BullMQ's event stream in Redis. */
const eventRoutes: FastifyPluginAsyncZod<{ jobs: JobService; events: JobEventStream; streams: SharedCapacity }> = async (
  app,
  { jobs, events, streams },
) => {
  app.get('/jobs/:id/events', { schema: { params: JobParams, headers: EventsHeaders } }, async (request, reply) => {
    const first = await jobs.requireStatus(request.caller, request.params.id);
    const release = openEventStream(request, reply, streams);
    const session = new JobEventSession(reply.raw, jobs, request.caller, first.id, events, release);
    await session.start(first, request.headers['last-event-id']).catch((error: Error) => {
      request.log.warn({ err: error.message }, 'event stream failed');
      reply.raw.end();
    });
  });

  app.get(
    '/jobs/:id/logs',
    { schema: { params: JobParams, querystring: LogsQuery, headers: LogsHeaders, response: { 200: JobLog } } },
    async (request, reply) => {
      const { offset, limit, follow } = request.query;
      if (!follow) {
        const { lines, total } = await jobs.logs(request.caller, request.params.id, offset, offset + limit - 1);
        return { lines, offset, total };
      }
      await jobs.requireStatus(request.caller, request.params.id);
      const release = openEventStream(request, reply, streams);
      const after = request.headers['last-event-id'];
      await followLog(reply.raw, jobs, request.caller, request.params.id, after === undefined ? offset : Number(after) + 1)
        .catch((error: Error) => request.log.warn({ err: error.message }, 'log stream failed'))
        .finally(() => {
          release();
          reply.raw.end();
        });
    },
  );
};
export default eventRoutes;
