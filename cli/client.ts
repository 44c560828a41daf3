import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './usage.js';

/** Where the service is and who asks: --url/--key, else RETRAIN_URL/RETRAIN_API_KEY, else the local single-user service. */
export interface Service {
  url: string;
  key: string | undefined;
}

const CONNECTION_OPTIONS = { url: { type: 'string' }, key: { type: 'string' } } as const;

/** Parses a command's own options beside --url and --key. */
export function parseCommand<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O) {
  const parsed = parseArgs({ args: argv, options: { ...CONNECTION_OPTIONS, ...options }, allowPositionals: true });
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const service: Service = {
    url: String(values.url ?? process.env.RETRAIN_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, ''),
    key: (values.key as string | undefined) ?? process.env.RETRAIN_API_KEY,
  };
  return { service, values: parsed.values, positionals: parsed.positionals };
}

/** An answer of the service that is not a success: its problem+json detail, and the field errors. */
export class ServiceError extends Error {}

export async function call(service: Service, path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (service.key) headers.set('authorization', `Bearer ${service.key}`);
  let response: Response;
  try {
    response = await fetch(`${service.url}${path}`, { ...init, headers });
  } catch (error) {
    const reason = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    throw new ServiceError(`cannot reach ${service.url} (${reason}); start it or pass --url`);
  }
  if (response.ok) return response;
  const body = (await response.json().catch(() => null)) as { detail?: string; errors?: Array<{ path: string; message: string }> } | null;
  const fields = body?.errors?.map((e) => `\n  ${e.path}: ${e.message}`).join('') ?? '';
  throw new ServiceError(`${response.status} ${body?.detail ?? response.statusText}${fields}`);
}

export async function callJson<T>(service: Service, path: string, init: RequestInit = {}): Promise<T> {
  return (await (await call(service, path, init)).json()) as T;
}

export const print = (value: unknown): void => void process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

/** The one positional argument a command takes, or a usage error naming it. */
export function one(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`needs ${what}`);
  return positionals[0];
}

let lastPlainLine = '';

/**
 * A progress bar on a terminal (redrawn in place), plain lines elsewhere (logs, pipes): there a line
 * whose `news` (what it says apart from estimates) repeats the last one's is left out.
 */
export function progressLine(text: string, fraction: number | null, news = text): void {
  if (!process.stderr.isTTY) {
    if (news !== lastPlainLine) process.stderr.write(`${text}\n`);
    lastPlainLine = news;
    return;
  }
  const width = 30;
  const filled = fraction === null ? 0 : Math.round(Math.min(1, Math.max(0, fraction)) * width);
  process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}\x1b[K`);
}
