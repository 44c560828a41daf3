import { createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { ProxyAgent, request, type Dispatcher } from 'undici';

export interface DownloadOptions {
  /** No answer, or no bytes, for this long: the attempt fails (and the next resumes). */
  timeoutMs: number;
  /** Attempts after the first, each after a longer wait (backoffMs, then doubled). */
  retries: number;
  backoffMs: number;
  /** Bytes the file must end with, when known: more is refused at once. */
  expectedBytes?: number;
  onProgress?: (bytes: number, totalBytes: number | null) => void;
}

/** What stopped a download: the URL, and the last cause, for the reason a job fails with. */
export class DownloadError extends Error {
  constructor(
    readonly url: string,
    readonly cause: string,
  ) {
    super(`could not download ${url}: ${cause}`);
  }
}

const proxies = new Map<string, Dispatcher>();
const variable = (name: string) => process.env[name] ?? process.env[name.toLowerCase()];

/** NO_PROXY as curl reads it: `*`, or host names and domain suffixes (`.example.com`, `example.com`), with an optional port. */
function bypassed(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return (variable('NO_PROXY') ?? '')
    .split(',')
    .map((entry) => entry.trim().toLowerCase())
    .filter(Boolean)
    .some((entry) => {
      if (entry === '*') return true;
      const [name, port] = entry.replace(/^\[|\]$/g, '').split(/:(?=\d+$)/);
      if (port && port !== (url.port || (url.protocol === 'https:' ? '443' : '80'))) return false;
      const bare = name.replace(/^\*?\./, '');
      return host === bare || host.endsWith(`.${bare}`);
    });
}

/** The proxy HTTPS_PROXY or HTTP_PROXY names for this URL (lower-case names too), unless NO_PROXY exempts its host. */
function dispatcherFor(url: URL): Dispatcher | undefined {
  const proxy = url.protocol === 'https:' ? (variable('HTTPS_PROXY') ?? variable('HTTP_PROXY')) : variable('HTTP_PROXY');
  if (!proxy || bypassed(url)) return undefined;
  let agent = proxies.get(proxy);
  if (!agent) proxies.set(proxy, (agent = new ProxyAgent(proxy)));
  return agent;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Attempts that could go on from where the last one broke off get a Range; a server that ignores it starts over. */
async function attempt(
  url: string,
  file: string,
  options: DownloadOptions,
): Promise<{ done: boolean; bytes: number; total: number | null }> {
  const have = await stat(file).then(
    (s) => s.size,
    () => 0,
  );
  const response = await request(url, {
    dispatcher: dispatcherFor(new URL(url)),
    headers: have > 0 ? { range: `bytes=${have}-` } : {},
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    maxRedirections: 5,
  });
  const { statusCode, headers, body } = response;
  if (statusCode === 416 && have > 0) {
    body.resume();
    return { done: true, bytes: have, total: have };
  }
  if (statusCode !== 200 && statusCode !== 206) {
    body.resume();
    throw new DownloadError(url, `the server answered ${statusCode}`);
  }
  const resumed = statusCode === 206 && String(headers['content-range'] ?? '').startsWith(`bytes ${have}-`);
  const start = resumed ? have : 0;
  const length = Number(headers['content-length'] ?? NaN);
  const total = Number.isFinite(length) ? start + length : null;
  if (options.expectedBytes !== undefined && total !== null && total !== options.expectedBytes)
    throw new DownloadError(url, `the server offers ${total} bytes; the manifest says ${options.expectedBytes}`);
  let bytes = start;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      options.onProgress?.(bytes, total);
      const over = options.expectedBytes !== undefined && bytes > options.expectedBytes;
      callback(over ? new DownloadError(url, `more than the ${options.expectedBytes} bytes the manifest says`) : null, chunk);
    },
  });
  await pipeline(body, counter, createWriteStream(file, { flags: resumed ? 'a' : 'w' }));
  return { done: total === null || bytes === total, bytes, total };
}

/**
 * Downloads `url` into `file` (over any part of it already there): a timeout on every wait, retries
 * with backoff, and each retry resuming with an HTTP Range from the bytes already written. Checking
 * what arrived is the caller's (sizes and hashes are in its manifest).
 */
export async function download(url: string, file: string, options: DownloadOptions): Promise<number> {
  let last = '';
  for (let attemptNo = 0; attemptNo <= options.retries; attemptNo++) {
    if (attemptNo > 0) await sleep(options.backoffMs * 2 ** (attemptNo - 1));
    try {
      const { done, bytes } = await attempt(url, file, options);
      if (done) return bytes;
      last = `the connection closed after ${bytes} bytes`;
    } catch (error) {
      if (error instanceof DownloadError && /manifest says/.test(error.cause)) {
        await rm(file, { force: true });
        throw error;
      }
      last = error instanceof DownloadError ? error.cause : describe(error);
    }
  }
  throw new DownloadError(url, `${last} (after ${options.retries + 1} attempts)`);
}

/** A network error as a person reads it: its code and message (undici's timeouts name themselves). */
function describe(error: unknown): string {
  const { code, message } = error as NodeJS.ErrnoException;
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}
