import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { sleep } from '../helpers/service.js';
import { tempDir } from '../helpers/torch.js';
import { freePort } from '../helpers/ports.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, output: () => string, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await sleep(250);
  }
  throw new Error(`${what} did not happen in ${timeoutMs} ms:\n${output().slice(-3000)}`);
}

describe('npm start (the README run command)', () => {
  const scratch = tempDir('start');
  let child: ChildProcess | undefined;
  after(() => {
    try {
      if (child?.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    rmSync(scratch, { recursive: true, force: true });
  });

  it('starts a session Redis when none answers, serves the API with a worker that trains, and stops in order', async () => {
    const [apiPort, redisPort] = [await freePort(), await freePort()];
    let output = '';
    child = spawn('npm', ['start'], {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: String(apiPort),
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        DATA_DIR: path.join(scratch, 'data'),
        ARTIFACTS_DIR: path.join(scratch, 'artifacts'),
        TFJS_BACKEND: 'wasm',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    const base = `http://127.0.0.1:${apiPort}`;

    const ready = await waitFor(
      'a ready API with a live worker',
      async () => {
        const body = (await (await fetch(`${base}/readyz`)).json()) as { workers: Array<{ backend: { choice: string } }> };
        return body.workers.length === 1 ? body : undefined;
      },
      () => output,
    );
    assert.equal(ready.workers[0].backend.choice, 'wasm');
    assert.match(output, new RegExp(`starting redis-server for this session`));

    const submitted = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        mode: 'feature_extraction',
        weights: 'random',
        inputSize: 32,
        epochs: 1,
        dataset: { type: 'synthetic', numClasses: 2, imagesPerClass: 4, imageSize: 32 },
      }),
    });
    assert.equal(submitted.status, 202);
    const { id } = (await submitted.json()) as { id: string };
    const done = await waitFor(
      'the job to complete',
      async () => {
        const status = (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as { state: string };
        return ['completed', 'failed'].includes(status.state) ? status : undefined;
      },
      () => output,
    );
    assert.equal(done.state, 'completed');
    // No internet here: the background pull of the default weights ends with its one line, and the start never waited for it.
    await waitFor(
      'the one line about the ImageNet weights',
      async () => (/ImageNet weights/.test(output) ? true : undefined),
      () => output,
    );
    assert.equal(output.match(/ImageNet weights/g)?.length, 1, output.slice(-3000));
    assert.match(output, /could not fetch the ImageNet weights now.*npx retrain weights import FILE --as imagenet/);
    assert.doesNotMatch(output, /"msg":"(incoming request|request completed)"/, 'requests are logged at debug, not at info');

    // Ctrl-C in a terminal: SIGINT to the whole foreground process group (npm, start.ts, its children).
    const exited = new Promise<[number | null, string | null]>((resolve) => child!.once('exit', (code, signal) => resolve([code, signal])));
    process.kill(-child.pid!, 'SIGINT');
    const [code, signal] = await exited;
    // npm itself got the SIGINT and ends by it; what it ran must have stopped cleanly before.
    assert.ok(code === 0 || signal === 'SIGINT', `npm start ended with ${code ?? signal}\n${output.slice(-2000)}`);
    assert.doesNotMatch(output, /exited; stopping the rest|grace period over/);
    assert.match(output, /shutting down: server[\s\S]*shutting down: redis/);
    assert.match(output, /worker closed/);
    assert.equal(
      await new Promise((resolve) => {
        const socket = net.connect(redisPort, '127.0.0.1', () => resolve(true)).on('error', () => resolve(false));
        socket.unref();
      }),
      false,
      'the session Redis is gone',
    );
  });
});
