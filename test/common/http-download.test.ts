import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { download, DownloadError } from '../../common/http-download.js';
import { tempDir } from '../helpers/torch.js';
import { startWeightsServer, type WeightsServer } from '../helpers/weights-server.js';

const FILE = randomBytes(3 * 1024 * 1024);
const OPTIONS = { timeoutMs: 1000, retries: 1, backoffMs: 10 };

/** An HTTP proxy that tunnels CONNECT requests, and counts them. */
async function startProxy(): Promise<{ url: string; tunnels: string[]; stop: () => Promise<void> }> {
  const tunnels: string[] = [];
  const server: Server = createServer((_request, response) => response.writeHead(405).end());
  server.on('connect', (request, client) => {
    tunnels.push(request.url ?? '');
    const [host, port] = (request.url ?? '').split(':');
    const upstream = net.connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.pipe(client).pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tunnels,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('downloads over HTTP', () => {
  const scratch = tempDir('http-download');
  let server: WeightsServer;
  before(async () => {
    server = await startWeightsServer({
      '/whole': { bytes: FILE, behaviour: { kind: 'serve' } },
      '/broken': { bytes: FILE, behaviour: { kind: 'drop', after: 1024 * 1024 } },
      '/silent': { bytes: FILE, behaviour: { kind: 'silent' } },
    });
  });
  after(async () => {
    await server.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('resumes with a Range where the connection broke off, and ends with the whole file', async () => {
    const file = path.join(scratch, 'broken');
    const progress: number[] = [];
    const bytes = await download(server.url('/broken'), file, { ...OPTIONS, onProgress: (done) => progress.push(done) });
    assert.equal(bytes, FILE.length);
    assert.ok(readFileSync(file).equals(FILE));
    const ranges = server.requests.filter((r) => r.path === '/broken').map((r) => r.range);
    assert.equal(ranges.length, 2);
    assert.match(ranges[1] ?? '', /^bytes=\d+-$/);
    assert.equal(progress.at(-1), FILE.length);
  });

  it('refuses at once a file larger than the manifest says, and deletes what it wrote', async () => {
    const file = path.join(scratch, 'too-big');
    await assert.rejects(download(server.url('/whole'), file, { ...OPTIONS, expectedBytes: 1000 }), /the manifest says 1000/);
    assert.equal(existsSync(file), false);
  });

  it('gives up on a server that never answers after every attempt has waited its timeout, naming the URL', async () => {
    await assert.rejects(
      download(server.url('/silent'), path.join(scratch, 'silent'), OPTIONS),
      (error: Error) =>
        error instanceof DownloadError && error.url === server.url('/silent') && /Timeout.*\(after 2 attempts\)/.test(error.message),
    );
  });

  it('goes through HTTP_PROXY, and around it for the hosts NO_PROXY names', async () => {
    const proxy = await startProxy();
    const saved = { HTTP_PROXY: process.env.HTTP_PROXY, NO_PROXY: process.env.NO_PROXY };
    try {
      process.env.HTTP_PROXY = proxy.url;
      delete process.env.NO_PROXY;
      await download(server.url('/whole'), path.join(scratch, 'proxied'), OPTIONS);
      assert.equal(proxy.tunnels.length, 1, 'through the proxy');
      assert.equal(proxy.tunnels[0], new URL(server.url('/whole')).host);
      process.env.NO_PROXY = 'example.com,127.0.0.1';
      await download(server.url('/whole'), path.join(scratch, 'direct'), OPTIONS);
      assert.equal(proxy.tunnels.length, 1, 'NO_PROXY: straight to the server');
      assert.ok(readFileSync(path.join(scratch, 'direct')).equals(FILE));
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      await proxy.stop();
    }
  });
});
