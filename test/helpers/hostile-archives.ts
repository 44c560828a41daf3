import { execFileSync } from 'node:child_process';
import zlib from 'node:zlib';
import { DEBIAN_PYTHON } from './torch.js';

/** A ustar header block (the review's generator: pax records carry the long paths). */
function header(name: string, size: number, type: string): Buffer {
  const block = Buffer.alloc(512);
  const octal = (value: number, at: number, length: number) =>
    block.write(value.toString(8).padStart(length - 1, '0') + '\0', at, length, 'latin1');
  block.write(name, 0, 100);
  octal(0o644, 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(size, 124, 12);
  octal(1700000000, 136, 12);
  block.write(' '.repeat(8), 148, 8, 'latin1');
  block.write(type, 156, 1, 'latin1');
  block.write('ustar\u000000', 257, 8, 'latin1');
  octal(
    block.reduce((sum, byte) => sum + byte, 0),
    148,
    7,
  );
  return block;
}

/**
 * The security review's archive (2026-12-02, finding 1): `entries` empty files, each at a path
 * `depth` folders deep, as a tar.gz of a few KB (250 x 1000 took the API's heap past 4 GB).
 */
export function deepTarGz(entries: number, depth: number): Buffer {
  const parts: Buffer[] = [];
  for (let n = 0; n < entries; n++) {
    const body = ` path=d${n}/${'a/'.repeat(depth)}f\n`;
    let digits = 1;
    while (String(digits + body.length).length !== digits) digits++;
    const record = Buffer.from(`${digits + body.length}${body}`);
    parts.push(header('pax', record.length, 'x'), record, Buffer.alloc((512 - (record.length % 512)) % 512), header('f', 0, '0'));
  }
  parts.push(Buffer.alloc(1024));
  return zlib.gzipSync(Buffer.concat(parts), { level: 9 });
}

/** A zip of empty files at the given paths, written by Python's zipfile (which writes whatever it is told). */
export function zipOf(file: string, paths: string[]): void {
  const program = `
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:
    for name in json.loads(sys.stdin.read()):
        z.writestr(name, b'')`;
  execFileSync(DEBIAN_PYTHON, ['-c', program, file], { input: JSON.stringify(paths) });
}

/** Paths of the review's zip variant: `entries` files `depth` folders deep. */
export const deepPaths = (entries: number, depth: number) => Array.from({ length: entries }, (_, n) => `d${n}/${'a/'.repeat(depth)}f`);
