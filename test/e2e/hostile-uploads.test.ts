import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ApiKeys } from '../../common/api-keys.js';
import { createLogger } from '../../common/logger.js';
import { redisConnection, scanKeys, whenReady } from '../../common/redis-connection.js';
import { deepPaths, deepTarGz, zipOf } from '../helpers/hostile-archives.js';
import { freePort } from '../helpers/ports.js';
import { sleep } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const ADMIN_API_KEY = 'admin-key-for-the-hostile-uploads-test-012';

const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;

/** Samples a process's RSS and asks its /healthz, every 50 ms, until stopped: what other clients saw meanwhile. */
function watch(pid: number, base: string) {
  let peak = 0;
  const answers: number[] = [];
  let running = true;
  const sampling = (async () => {
    while (running) {
      peak = Math.max(peak, rssOf(pid));
      answers.push(
        await fetch(`${base}/healthz`).then(
          (r) => r.status,
          () => 0,
        ),
      );
      await sleep(50);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await sampling;
      return { peak, answers };
    },
  };
}

describe('hostile uploads against a running API process', () => {
  const scratch = tempDir('hostile-uploads');
  const prefix = `test-hostile-uploads-${process.pid}`;
  const redis = redisConnection(
    { REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
    'producer',
    createLogger('api', 'silent'),
  );
  let api: ChildProcess;
  let base: string;
  let port: number;
  let key: string;
  let output = '';
  const incoming = path.join(scratch, 'data', 'uploads', '.incoming');

  before(async () => {
    await whenReady(redis, 5000);
    key = (await new ApiKeys(redis, prefix).create('mallory')).key;
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    api = spawn(process.execPath, ['--import', 'tsx', 'services/api/main.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: String(port),
        QUEUE_PREFIX: prefix,
        ADMIN_API_KEY,
        DATA_DIR: path.join(scratch, 'data'),
        ARTIFACTS_DIR: path.join(scratch, 'artifacts'),
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    api.stdout!.on('data', (d) => (output += d));
    api.stderr!.on('data', (d) => (output += d));
    for (
      let i = 0;
      i < 400 &&
      (await fetch(`${base}/healthz`).then(
        (r) => r.status,
        () => 0,
      )) !== 200;
      i++
    )
      await sleep(100);
  });
  after(async () => {
    api.kill('SIGKILL');
    for (const name of await scanKeys(redis, `${prefix}:*`)) await redis.del(name);
    await redis.quit();
    rmSync(scratch, { recursive: true, force: true });
  });

  const upload = (body: Buffer, type: string) =>
    fetch(`${base}/v1/datasets?name=deep`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': type },
      body: Uint8Array.from(body),
    });

  it("refuses the review's deep tar.gz and zip with a 400, in bounded memory, serving other requests meanwhile, leaving nothing", async () => {
    const zipFile = path.join(scratch, 'deep.zip');
    zipOf(zipFile, deepPaths(100, 1000));
    const baseline = rssOf(api.pid!);
    const watching = watch(api.pid!, base);
    const answers = [];
    for (const [body, type] of [
      [deepTarGz(250, 1000), 'application/gzip'],
      [readFileSync(zipFile), 'application/zip'],
    ] as const) {
      const response = await upload(body, type);
      answers.push({ status: response.status, detail: ((await response.json()) as { detail: string }).detail });
    }
    const { peak, answers: health } = await watching.stop();
    for (const answer of answers) assert.match(answer.detail, /is 1002 folders deep; at most 8 are accepted/, JSON.stringify(answer));
    assert.deepEqual(
      answers.map((a) => a.status),
      [400, 400],
    );
    assert.ok(peak - baseline < 150 * 1024 ** 2, `RSS grew by ${(peak - baseline) / 1024 ** 2} MiB:\n${output.slice(-2000)}`);
    assert.ok(health.length > 0 && health.every((status) => status === 200), `healthz meanwhile: ${health.join(',')}`);
    assert.deepEqual(readdirSync(incoming), [], 'no folder left behind');
    assert.equal((await fetch(`${base}/healthz`)).status, 200, 'the process lives');
  });

  it('removes what an upload cut off by its client had written, at once', async () => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write(
      `POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/gzip\r\nContent-Length: 10000000\r\n\r\n`,
    );
    socket.write(Buffer.alloc(200 * 1024));
    for (let i = 0; i < 100 && readdirSync(incoming).length === 0; i++) await sleep(20);
    assert.equal(readdirSync(incoming).length, 1, 'the archive was being received');
    socket.destroy();
    for (let i = 0; i < 100 && readdirSync(incoming).length > 0; i++) await sleep(20);
    assert.deepEqual(readdirSync(incoming), [], 'gone with the connection, not at the next start');
  });
});
