import { sseMessages, type SseMessage } from '../../common/sse.js';
import type { Problem } from '../../schemas/problem.js';

const KEY_STORAGE = 'retrain.apiKey';

export const apiKey = () => sessionStorage.getItem(KEY_STORAGE) ?? '';
export const setApiKey = (key: string) => (key ? sessionStorage.setItem(KEY_STORAGE, key) : sessionStorage.removeItem(KEY_STORAGE));

/** A 4xx/5xx answer, with the service's problem+json body when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Partial<Problem>,
  ) {
    super(problem.detail ?? `HTTP ${status}`);
  }
}

function headers(extra: HeadersInit = {}): Headers {
  const all = new Headers(extra);
  const key = apiKey();
  if (key) all.set('authorization', `Bearer ${key}`);
  return all;
}

export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const response = await fetch(path, { ...init, headers: headers(init.headers) });
  if (response.ok) return response;
  const body = (await response.json().catch(() => ({}))) as ApiError['problem'];
  if (response.status === 401) window.dispatchEvent(new CustomEvent('retrain:unauthorized'));
  throw new ApiError(response.status, body);
}

export async function getJson<T>(path: string): Promise<T> {
  return (await (await request(path)).json()) as T;
}

export async function sendJson<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: body === undefined ? {} : { 'content-type': 'application/json' } };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await request(path, init);
  return (response.status === 204 ? null : await response.json()) as T;
}

/** Saves a download under its server-given name (fetched with the key, which a plain link cannot send). */
export async function saveDownload(path: string, converting: () => void = () => undefined): Promise<string> {
  let response = await request(path);
  // A format the API makes on first request: it says so (202) and when to ask again.
  while (response.status === 202) {
    converting();
    const seconds = Number(response.headers.get('retry-after') ?? 5);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    response = await request(path);
  }
  const filename = /filename="([^"]+)"/.exec(response.headers.get('content-disposition') ?? '')?.[1] ?? 'download';
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement('a'), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return filename;
}

/** An image the API serves, as an object URL (an <img> cannot send the key). */
export async function imageUrl(path: string): Promise<string> {
  return URL.createObjectURL(await (await request(path)).blob());
}

async function* chunks(body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** A job's Server-Sent Events through fetch (EventSource cannot send the key), from after `lastEventId` when given. */
export async function* jobEvents(jobId: string, signal: AbortSignal, lastEventId: string | null): AsyncGenerator<SseMessage> {
  const extra: Record<string, string> = { accept: 'text/event-stream' };
  if (lastEventId) extra['last-event-id'] = lastEventId;
  const response = await request(`/v1/jobs/${jobId}/events`, { headers: extra, signal });
  if (response.body) yield* sseMessages(chunks(response.body));
}

/** POSTs a file with upload progress (fetch reports none). */
export function uploadFile(path: string, file: File, onProgress: (fraction: number) => void): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    const key = apiKey();
    if (key) xhr.setRequestHeader('authorization', `Bearer ${key}`);
    xhr.setRequestHeader('content-type', file.name.endsWith('.zip') ? 'application/zip' : 'application/gzip');
    xhr.upload.onprogress = (event) => event.lengthComputable && onProgress(event.loaded / event.total);
    xhr.onload = () => {
      const body = JSON.parse(xhr.responseText || '{}') as ApiError['problem'];
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new ApiError(0, { detail: 'the upload did not reach the service' }));
    xhr.send(file);
  });
}
