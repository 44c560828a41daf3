// Runs a tier of the test suite with Node's test runner: `node --import tsx scripts/run-tests.ts [all|unit|engine|e2e]
// [--test-name-pattern=RE]`.
// unit: no model is trained (a developer's loop, files two at a time); engine: the model, kernels and
// backends; e2e: real workers training real jobs. all (npm test, CI): every file, the long ones first.
// TAP on stdout, then each file's duration, slowest first.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { run } from 'node:test';
import { tap, type TestEvent } from 'node:test/reporters';
import { parseArgs } from 'node:util';
import { fileDurations } from './file-durations-reporter.js';

const ROOT = path.resolve(import.meta.dirname, '..');

/** Every *.test.ts under test/, as paths relative to the root, sorted. */
function testFiles(): string[] {
  return readdirSync(path.join(ROOT, 'test'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.test.ts'))
    .map((file) => path.join('test', file))
    .sort();
}

/** The e2e files that need only Redis and the API (no worker trains anything). */
const API_ONLY_E2E = ['validation', 'limits', 'queue-admin', 'shared-capacity', 'large-keyspace', 'hostile-uploads', 'job-filters'].map(
  (name) => `test/e2e/${name}.test.ts`,
);
const UNIT_FOLDERS = [
  'test/schemas/',
  'test/common/',
  'test/services/',
  'test/workers/',
  'test/cli/',
  'test/architecture/',
  'test/engine/data/',
];
const UNIT_ENGINE_HELPERS = ['test/engine/training/controls.test.ts', 'test/engine/training/classification-report.test.ts'];

const isUnit = (file: string) =>
  UNIT_FOLDERS.some((folder) => file.startsWith(folder)) || UNIT_ENGINE_HELPERS.includes(file) || API_ONLY_E2E.includes(file);
const isEngine = (file: string) => file.startsWith('test/engine/') && !isUnit(file);

const isE2e = (file: string) => !isUnit(file) && !isEngine(file);

interface Tier {
  files: (all: string[]) => string[];
  concurrency: number;
}

/**
 * The slowest files, slowest first, as the durations the suite ends with last listed them (2026-12-06): started first,
 * so that none of them begins near the end and runs on alone. A file missing here just takes its tier's place.
 */
const SLOWEST = [
  'e2e/cancel-resume',
  'e2e/predict',
  'e2e/journey',
  'e2e/exports',
  'e2e/weights',
  'e2e/s3-store',
  'engine/native/without-native-kernels',
  'e2e/dashboard',
  'e2e/sweeps',
  'e2e/redis-outage',
  'e2e/learning',
  'e2e/frozen-stages',
].map((name) => `test/${name}.test.ts`);

/** The slowest files first, then the e2e ones, the engine ones and the unit ones. */
function longestFirst(files: string[]): string[] {
  const rest = files.filter((file) => !SLOWEST.includes(file));
  return [...SLOWEST.filter((file) => files.includes(file)), ...rest.filter(isE2e), ...rest.filter(isEngine), ...rest.filter(isUnit)];
}

// An e2e file spends much of its time waiting (for a worker to start, a lock to expire, a server to
// answer): three at a time keep both cores busy. Long files first, so short ones fill the end.
const TIERS: Record<string, Tier> = {
  all: { files: longestFirst, concurrency: 3 },
  unit: { files: (files: string[]) => files.filter(isUnit), concurrency: 2 },
  engine: { files: (files: string[]) => files.filter(isEngine), concurrency: 1 },
  e2e: { files: (files: string[]) => longestFirst(files).filter(isE2e), concurrency: 3 },
};

const { positionals, values } = parseArgs({ allowPositionals: true, options: { 'test-name-pattern': { type: 'string', multiple: true } } });
const [tierName = 'all'] = positionals;
const tier = TIERS[tierName] as Tier | undefined;
if (!tier) {
  console.error(`unknown tier "${tierName}": one of ${Object.keys(TIERS).join(', ')}`);
  process.exit(2);
}
// Files side by side each start workers whose oneDNN (GNU OpenMP) would use every core and spin at each
// barrier, against the other files' threads: one thread each, sleeping when idle, ran three e2e files
// 1.46x faster here (121 s against 177 s). A caller's own settings win. The files' processes inherit them.
if (tier.concurrency > 1) {
  process.env.OMP_NUM_THREADS ??= '1';
  process.env.OMP_WAIT_POLICY ??= 'passive';
}
process.chdir(ROOT);
// run() keeps the files in the order given; `node --test` sorts them by path.
const events = run({ files: tier.files(testFiles()), concurrency: tier.concurrency, testNamePatterns: values['test-name-pattern'] });
events.on('test:fail', (data: { todo?: string | boolean }) => {
  if (data.todo === undefined || data.todo === false) process.exitCode = 1;
});
/** Feeds `reporter` its own copy of the events and hands on what it writes. */
async function report(reporter: (source: AsyncGenerator<TestEvent, void>) => AsyncIterable<string>, write: (chunk: string) => void) {
  const copy: AsyncIterable<TestEvent> = events.pipe(new PassThrough({ objectMode: true }));
  async function* each() {
    yield* copy;
  }
  for await (const chunk of reporter(each())) write(chunk);
}
const durations: string[] = [];
await Promise.all([report(tap, (chunk) => process.stdout.write(chunk)), report(fileDurations, (chunk) => durations.push(chunk))]);
process.stdout.write(durations.join(''));
