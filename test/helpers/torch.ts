import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
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

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `retrain-${prefix}-`));
}

export function readFloat32(file: string): Float32Array {
  const bytes = readFileSync(file);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}
