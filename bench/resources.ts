// What uploads cost the API, measured on a real API process: `npm run bench:resources` (Redis on REDIS_URL).
// Prints one JSON object: for each upload, seconds to the answer, the API's peak and settled RSS, and the
// slowest /healthz answer while it ran (the event loop's responsiveness).
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createGzip, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import * as tar from 'tar';
import { seededRandom } from '../common/random.js';
import { freePort } from '../test/helpers/ports.js';

interface Entry {
  path: string;
  data: Buffer;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Buffer): number {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const typed = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typed));
  return Buffer.concat([length, typed, crc]);
}

/** A 16x16 RGB PNG of seeded noise: every file distinct, so none is a duplicate. Encoded here: sharp would take minutes for 200k. */
function noisePng(seed: number, side = 16): Buffer {
  const random = seededRandom(seed);
  const header = Buffer.alloc(13);
  header.writeUInt32BE(side, 0);
  header.writeUInt32BE(side, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  const rows = Buffer.alloc(side * (1 + side * 3));
  for (let i = 0; i < rows.length; i++) rows[i] = i % (1 + side * 3) === 0 ? 0 : Math.floor(random() * 256);
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, pngChunk('IHDR', header), pngChunk('IDAT', deflateSync(rows)), pngChunk('IEND', Buffer.alloc(0))]);
}

function* tarBlocks(entries: Iterable<Entry>): Generator<Buffer> {
  for (const { path: name, data } of entries) {
    const header = new tar.Header({ path: name, type: 'File', mode: 0o644, size: data.length, mtime: new Date(0) });
    header.encode();
    yield header.block!;
    yield data;
    const padding = (512 - (data.length % 512)) % 512;
    if (padding) yield Buffer.alloc(padding);
  }
  yield Buffer.alloc(1024);
}

async function writeTarGz(file: string, entries: Iterable<Entry>): Promise<number> {
  await pipeline(Readable.from(tarBlocks(entries)), createGzip({ level: 9 }), createWriteStream(file));
  return statSync(file).size;
}

function* classFolders(classes: Array<[name: string, images: number]>): Generator<Entry> {
  let seed = 1;
  for (const [name, images] of classes) for (let i = 0; i < images; i++) yield { path: `${name}/${i}.png`, data: noisePng(seed++) };
}

/** A class of one image and a "photo" of zeros in another: a valid dataset but for its expansion. */
function* zerosBomb(bytes: number): Generator<Entry> {
  yield { path: 'dogs/0.png', data: noisePng(0) };
  yield { path: 'cats/zeros.png', data: Buffer.alloc(bytes) };
}

const rssMiB = (pid: number) => {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : 0;
};

/** Samples the API's RSS and /healthz latency every 100 ms while `work` runs. */
async function probed<T>(pid: number, base: string, work: () => Promise<T>) {
  let peakRss = rssMiB(pid);
  let slowestHealthz = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      const started = performance.now();
      await fetch(`${base}/healthz`);
      slowestHealthz = Math.max(slowestHealthz, performance.now() - started);
      peakRss = Math.max(peakRss, rssMiB(pid));
      await sleep(100);
    }
  })();
  const started = performance.now();
  try {
    const result = await work();
    return {
      result,
      seconds: (performance.now() - started) / 1000,
      peakRssMiB: Math.round(peakRss),
      slowestHealthzMs: Math.round(slowestHealthz),
    };
  } finally {
    running = false;
    await sampler;
  }
}

async function upload(base: string, name: string, file: string) {
  const response = await fetch(`${base}/v1/datasets?name=${name}`, {
    method: 'POST',
    headers: { 'content-type': 'application/gzip' },
    body: Readable.toWeb(createReadStream(file, { highWaterMark: 1024 * 1024 })) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  const body = (await response.json()) as { images?: number; preflight?: { usable: number }; detail?: string };
  return { status: response.status, images: body.images ?? null, usable: body.preflight?.usable ?? null, detail: body.detail ?? null };
}

// --scale 0.01 runs every case at a hundredth of its size: a smoke run of the bench itself.
const scale = Number(parseArgs({ options: { scale: { type: 'string', default: '1' } } }).values.scale);
const scaled = (n: number) => Math.max(1, Math.round(n * scale));

const scratch = mkdtempSync(path.join(os.tmpdir(), 'retrain-bench-resources-'));
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const api = spawn(process.execPath, ['--import', 'tsx', 'services/api/main.ts'], {
  env: {
    ...process.env,
    PORT: String(port),
    QUEUE_PREFIX: `bench-resources-${process.pid}`,
    DATA_DIR: path.join(scratch, 'data'),
    ARTIFACTS_DIR: path.join(scratch, 'artifacts'),
    LOG_LEVEL: 'warn',
  },
  stdio: ['ignore', 'inherit', 'inherit'],
});
try {
  for (
    let i = 0;
    i < 300 &&
    !(await fetch(`${base}/healthz`)
      .then((r) => r.ok)
      .catch(() => false));
    i++
  )
    await sleep(100);
  const sample = noisePng(1);
  const decoded = await sharp(sample).raw().toBuffer({ resolveWithObject: true });
  if (decoded.info.width !== 16) throw new Error('the generated PNG does not decode');

  const cases: Array<{ name: string; entries: () => Iterable<Entry> }> = [
    // 20 folders and 199,980 files: the default UPLOAD_MAX_FILES (200,000 entries, folders counted).
    {
      name: 'files-200k',
      entries: () => classFolders(Array.from({ length: 20 }, (_, i) => [`class${i}`, scaled(9_999)] as [string, number])),
    },
    {
      name: 'one-class-40k',
      entries: () =>
        classFolders([
          ['big', scaled(40_000)],
          ['small', scaled(1_000)],
        ]),
    },
    // One entry of 1 GiB of zeros, about 1 MiB gzipped: refused past the expansion ratio.
    { name: 'gzip-bomb-1gib', entries: () => zerosBomb(scaled(1024 ** 3)) },
  ];
  const rows = [];
  for (const { name, entries } of cases) {
    const file = path.join(scratch, `${name}.tar.gz`);
    const archiveBytes = await writeTarGz(file, entries());
    const measured = await probed(api.pid!, base, () => upload(base, name, file));
    await sleep(5_000);
    rows.push({
      case: name,
      archiveBytes,
      ...measured.result,
      seconds: Number(measured.seconds.toFixed(1)),
      peakRssMiB: measured.peakRssMiB,
      settledRssMiB: Math.round(rssMiB(api.pid!)),
      slowestHealthzMs: measured.slowestHealthzMs,
    });
    rmSync(file, { force: true });
  }
  process.stdout.write(`${JSON.stringify({ cpus: os.cpus().length, cpu: os.cpus()[0]?.model, rows }, null, 2)}\n`);
} finally {
  api.kill('SIGTERM');
  await new Promise((resolve) => api.once('exit', resolve));
  rmSync(scratch, { recursive: true, force: true });
}
