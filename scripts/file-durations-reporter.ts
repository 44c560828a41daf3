// A reporter for Node's test runner: at the end of a run, each test file's time (its top-level
// suites and tests added up), slowest first, so slow files stay in sight.
import path from 'node:path';
import type { TestEvent } from 'node:test/reporters';

export async function* fileDurations(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const perFile = new Map<string, number>();
  for await (const event of source) {
    if ((event.type === 'test:pass' || event.type === 'test:fail') && event.data.nesting === 0 && event.data.file) {
      perFile.set(event.data.file, (perFile.get(event.data.file) ?? 0) + (event.data.details?.duration_ms ?? 0));
    }
  }
  const rows = [...perFile].sort((a, b) => b[1] - a[1]);
  const total = rows.reduce((sum, [, ms]) => sum + ms, 0);
  yield '# seconds per file, slowest first\n';
  for (const [file, ms] of rows) yield `# ${(ms / 1000).toFixed(1).padStart(7)}  ${path.relative(process.cwd(), file)}\n`;
  yield `# ${(total / 1000).toFixed(1).padStart(7)}  in all (files run side by side take less wall time)\n`;
}
