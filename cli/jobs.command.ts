import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { call, callJson, one, parseCommand, print, progressLine, type Service } from './client.js';
import { sseMessages } from '../common/sse.js';
import { UsageError } from './usage.js';

export const JOBS_USAGE = `retrain jobs submit SPEC.json [--watch]   submit a job (--watch: follow it to its end)
       retrain jobs list [--state S] [--name N] [--tag T] [--mode M]   your jobs, newest first
       retrain jobs get ID                       a job's status
       retrain jobs watch ID                     follow a job live, then print its final metrics
       retrain jobs cancel ID                    cancel a queued or running job
       retrain jobs download ID [--epoch final|latest|best|N] [--format tar.gz|safetensors|onnx] [--output FILE]
   every command: [--url URL] [--key KEY]   (or RETRAIN_URL, RETRAIN_API_KEY; default http://127.0.0.1:8080)`;

interface SseEvent {
  event: string;
  data: Record<string, string | number | boolean | null>;
}

interface DownloadOptions {
  epoch?: string;
  format?: string;
  output?: string;
}

/** The job's Server-Sent Events, as they come, to the end of the stream. */
async function* eventsOf(service: Service, id: string): AsyncGenerator<SseEvent> {
  const response = await call(service, `/v1/jobs/${id}/events`, { headers: { accept: 'text/event-stream' } });
  if (!response.body) return;
  for await (const { event, data } of sseMessages(response.body)) yield { event, data: data as SseEvent['data'] };
}

/**
 * A progress event as a line, how far along it is (the weights' bytes while they download, else the
 * job's steps), and the line without its estimate.
 */
function progressText(data: SseEvent['data']): [string, number | null, string] {
  const download = data.download as unknown as {
    variant: string;
    bytes: number;
    totalBytes: number | null;
    percent: number | null;
    waiting: boolean;
  } | null;
  if (data.phase === 'downloading_weights' && download) {
    const of = download.totalBytes ? ` of ${download.totalBytes}` : '';
    const text = download.waiting
      ? `waiting for another worker fetching the ${download.variant} weights`
      : `downloading the ${download.variant} weights: ${download.bytes}${of} bytes`;
    return [text, download.percent === null ? null : download.percent / 100, text];
  }
  const eta = data.etaSeconds === null ? '' : ` ETA ${String(data.etaSeconds)} s`;
  const text = `${String(data.phase)} epoch ${String(data.epoch)}/${String(data.totalEpochs)} step ${String(data.step)}/${String(data.totalSteps)} ${String(data.percent)}%`;
  return [`${text}${eta}`, Number(data.percent) / 100, text];
}

/** Follows a job: a progress bar, a line per epoch and for skipped files; resolves with its final state. */
async function watch(service: Service, id: string): Promise<string> {
  let state = 'unknown';
  for await (const { event, data } of eventsOf(service, id)) {
    if (event === 'status' || event === 'state') state = String(data.state);
    if (event === 'progress') progressLine(...progressText(data));
    if (event === 'skipped') {
      if (process.stderr.isTTY) process.stderr.write('\n');
      const files = data.files as unknown as Array<{ file: string; reason: string }>;
      const more = Number(data.count) > files.length ? ` (and ${Number(data.count) - files.length} more)` : '';
      process.stderr.write(
        `skipped ${String(data.count)} unusable file(s): ${files.map((f) => `${f.file} (${f.reason})`).join(', ')}${more}\n`,
      );
    }
    if (event === 'epoch') {
      if (process.stderr.isTTY) process.stderr.write('\n');
      process.stderr.write(`epoch ${String(data.epoch)}: ${JSON.stringify(data)}\n`);
    }
  }
  if (process.stderr.isTTY) process.stderr.write('\n');
  return state;
}

async function finish(service: Service, id: string): Promise<void> {
  const state = await watch(service, id);
  const status = await callJson<{ state: string; failure: unknown; result: unknown }>(service, `/v1/jobs/${id}`);
  print({
    id,
    state: status.state,
    result: status.result,
    failure: status.failure,
    evaluation: (await callJson<{ evaluation: unknown }>(service, `/v1/jobs/${id}/metrics`)).evaluation,
  });
  if (state !== 'completed') process.exitCode = 1;
}

async function download(service: Service, id: string, { epoch = 'final', format = 'tar.gz', output }: DownloadOptions): Promise<void> {
  const query = new URLSearchParams({ epoch, format });
  let response = await call(service, `/v1/jobs/${id}/checkpoint?${query}`);
  // A format the service makes on first request: it says so (202) and when to ask again.
  while (response.status === 202) {
    const seconds = Number(response.headers.get('retry-after') ?? 5);
    process.stderr.write(`retrain: the service is converting the model to ${format}; asking again in ${seconds} s\n`);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    response = await call(service, `/v1/jobs/${id}/checkpoint?${query}`);
  }
  const named = /filename="([^"]+)"/.exec(response.headers.get('content-disposition') ?? '')?.[1];
  output ??= named ?? `${id}.${format}`;
  await pipeline(Readable.fromWeb(response.body as never), createWriteStream(output));
  process.stderr.write(`retrain: wrote ${output}\n`);
}

export async function jobs(argv: string[]): Promise<void> {
  const { service, values, positionals } = parseCommand(argv, {
    watch: { type: 'boolean' },
    state: { type: 'string' },
    name: { type: 'string' },
    tag: { type: 'string' },
    mode: { type: 'string' },
    epoch: { type: 'string' },
    format: { type: 'string' },
    output: { type: 'string' },
  });
  const [action, ...rest] = positionals;
  switch (action) {
    case 'submit': {
      const spec = await readFile(one(rest, 'the path of a job spec (JSON)'), 'utf8');
      const job = await callJson<{ id: string }>(service, '/v1/jobs', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: spec,
      });
      if (!values.watch) return print(job);
      process.stderr.write(`retrain: job ${job.id}\n`);
      return finish(service, job.id);
    }
    case 'list': {
      const filters = Object.entries({ state: values.state, name: values.name, tag: values.tag, mode: values.mode }).filter(
        (entry): entry is [string, string] => typeof entry[1] === 'string',
      );
      return print(await callJson(service, `/v1/jobs?${new URLSearchParams([['limit', '100'], ...filters])}`));
    }
    case 'get':
      return print(await callJson(service, `/v1/jobs/${one(rest, 'a job id')}`));
    case 'watch':
      return finish(service, one(rest, 'a job id'));
    case 'cancel':
      return print(await callJson(service, `/v1/jobs/${one(rest, 'a job id')}`, { method: 'DELETE' }));
    case 'download':
      return download(service, one(rest, 'a job id'), values);
    default:
      throw new UsageError(action ? `unknown jobs action ${action}` : 'jobs needs an action');
  }
}
