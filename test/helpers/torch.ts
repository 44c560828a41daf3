import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Debian's interpreter: a bare `python3` may be another one that does not see python3-torch. */
export const DEBIAN_PYTHON = '/usr/bin/python3';
const SCRIPT = path.resolve(import.meta.dirname, '../../scripts/torch_reference.py');

export function torchReference(args: string[]): void {
  try {
    execFileSync(DEBIAN_PYTHON, [SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '');
    throw new Error(
      `PyTorch reference failed (needs apt-get install python3-torch python3-torchvision; .ci/run installs them): ${stderr}`,
      { cause: error },
    );
  }
}

/**
 * The folder of `torch_reference.py make` with these arguments (stand-in weights, inputs, logits), made
 * once and shared read-only by every test file: keyed by the script's bytes and the arguments.
 */
export function standInReference(args: string[]): string {
  const key = createHash('sha256').update(readFileSync(SCRIPT)).update(JSON.stringify(args)).digest('hex').slice(0, 16);
  const cache = path.join(os.tmpdir(), 'retrain-test-stand-ins');
  const folder = path.join(cache, key);
  if (existsSync(folder)) return folder;
  mkdirSync(cache, { recursive: true });
  const making = mkdtempSync(path.join(cache, `${key}-making-`));
  torchReference(['make', '--out', making, ...args]);
  try {
    renameSync(making, folder);
  } catch (error) {
    // Another test file made it first: keep theirs.
    rmSync(making, { recursive: true, force: true });
    if (!existsSync(folder)) throw error;
  }
  return folder;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `retrain-${prefix}-`));
}

export function readFloat32(file: string): Float32Array {
  const bytes = readFileSync(file);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}
