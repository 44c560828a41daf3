import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback HTTP server standing in for download.pytorch.org (no internet here): it serves files the
 * tests made, each at a path with a behaviour of its own, and records every request it got.
 */
export type Behaviour =
  /** The whole file, at about `bytesPerSecond` (slow enough for two workers to ask at once). */
  | { kind: 'serve'; bytesPerSecond?: number }
  /** The first answer breaks off after `after` bytes; later ones honour Range (206). */
  | { kind: 'drop'; after: number }
  /** Takes the request and never answers. */
  | { kind: 'silent' };

export interface WeightsServer {
  url: (path: string) => string;
  requests: Array<{ path: string; range: string | undefined }>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function send(response: ServerResponse, bytes: Buffer, bytesPerSecond?: number) {
  const chunk = 64 * 1024;
  for (let at = 0; at < bytes.length; at += chunk) {
    if (!response.write(bytes.subarray(at, at + chunk))) await new Promise((resolve) => response.once('drain', resolve));
    if (bytesPerSecond) await sleep((1000 * chunk) / bytesPerSecond);
    if (response.destroyed) return;
  }
  response.end();
}

export async function startWeightsServer(files: Record<string, { bytes: Buffer; behaviour: Behaviour }>): Promise<WeightsServer> {
  const requests: WeightsServer['requests'] = [];
  const dropped = new Set<string>();
  const hung: ServerResponse[] = [];
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const path = request.url ?? '';
    requests.push({ path, range: request.headers.range });
    const file = files[path];
    if (!file) return response.writeHead(404).end();
    const { bytes, behaviour } = file;
    if (behaviour.kind === 'silent') return void hung.push(response);
    const range = /^bytes=(\d+)-$/.exec(request.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    if (range) {
      response.writeHead(206, {
        'content-length': bytes.length - start,
        'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}`,
      });
    } else {
      response.writeHead(200, { 'content-length': bytes.length, 'accept-ranges': 'bytes' });
    }
    if (behaviour.kind === 'drop' && !dropped.has(path)) {
      dropped.add(path);
      response.write(bytes.subarray(0, behaviour.after), () => response.destroy());
      return;
    }
    void send(response, bytes.subarray(start), behaviour.kind === 'serve' ? behaviour.bytesPerSecond : undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    requests,
    stop: async () => {
      hung.forEach((response) => response.destroy());
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
