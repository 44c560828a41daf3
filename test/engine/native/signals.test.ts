import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../../..');

describe('signals while the oneDNN kernels run', () => {
  it('a process training in fp32 takes a signal every millisecond and still finishes, having learned (its lowest loss well under its first)', async () => {
    // oneDNN's JIT GEMM kernels point rsp into the heap (uxlfoundation/oneDNN#4845): a signal handled in them wrote
    // its frame over heap memory and the process aborted in free() after a few dozen (a profiler, SIGTERM at shutdown).
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/train-under-signals.ts', '40'], {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let [stdout, stderr, sent] = ['', '', 0];
    let sender: NodeJS.Timeout | undefined;
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.startsWith('ready\n') && !sender) {
        sender = setInterval(() => (child.kill('SIGUSR2'), sent++), 1);
      }
      if (stdout.split('\n').length > 2 && sender) {
        clearInterval(sender);
        child.stdin.end();
      }
    });
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    clearInterval(sender);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, `${stdout.slice(-2000)}\n${stderr.slice(-4000)}`);
    const { kernels, losses, signals } = JSON.parse(stdout.split('\n')[1]) as { kernels: string; losses: number[]; signals: number };
    assert.match(kernels, /^onednn /);
    assert.ok(signals > 500 && signals <= sent, `${signals} of ${sent} signals handled`);
    // Whole-network Adam on one batch of noise learns, then swings (both before and after a change of summation order):
    // the lowest loss says it learned, the last one does not.
    assert.ok(Math.min(...losses) < 0.9 * losses[0], `losses ${losses.join(', ')}`);
  });
});
