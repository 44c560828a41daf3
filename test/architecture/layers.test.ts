import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * The layers, top to bottom, and what each may import. The API's main thread and the worker role sit
 * beside each other on the same lower layers; the API's worker threads are the one door from the
 * API into the engine.
 */
const LAYERS: Array<{ name: string; files: RegExp; may: string[] }> = [
  { name: 'schemas', files: /^schemas\//, may: [] },
  { name: 'common', files: /^common\//, may: ['schemas'] },
  { name: 'engine', files: /^engine\//, may: ['common', 'schemas'] },
  { name: 'domain', files: /^services\/(jobs|datasets|sweeps|webhooks)\//, may: ['common', 'schemas'] },
  { name: 'api-threads', files: /^services\/api\/threads\//, may: ['api-thread-side', 'engine', 'common', 'schemas'] },
  { name: 'api-thread-side', files: /^services\/api\/thread-(rpc|protocol)\.ts$/, may: ['common', 'schemas'] },
  { name: 'api', files: /^services\/api\//, may: ['api-thread-side', 'domain', 'common', 'schemas'] },
  { name: 'worker', files: /^workers\//, may: ['engine', 'common', 'schemas'] },
  { name: 'cli', files: /^cli\//, may: ['engine', 'common', 'schemas'] },
  // Browser code, bundled by esbuild: contracts (as types) and the few common modules that run anywhere.
  { name: 'dashboard', files: /^dashboard\//, may: ['common', 'schemas'] },
];
/** Packages that load native code or a tensor runtime: never on the API's main thread. */
const HEAVY = /^(@tensorflow\/|sharp$)/;
const HEAVY_ALLOWED = new Set(['engine', 'api-threads', 'worker', 'cli']);

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => path.relative(ROOT, path.join(entry.parentPath, entry.name)));
}

const layerOf = (file: string) => LAYERS.find((layer) => layer.files.test(file))?.name;

interface Graph {
  /** Project files each file imports (type-only imports too: a contract is a dependency). */
  internal: Map<string, string[]>;
  packages: Map<string, string[]>;
}

function importGraph(files: string[]): Graph {
  const internal = new Map<string, string[]>();
  const packages = new Map<string, string[]>();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(path.join(ROOT, file), 'utf8'), true, true);
    const specifiers = importedFiles.map((imported) => imported.fileName);
    internal.set(
      file,
      specifiers
        .filter((s) => s.startsWith('.'))
        .map((s) => path.relative(ROOT, path.resolve(ROOT, path.dirname(file), s)).replace(/\.js$/, '.ts')),
    );
    packages.set(
      file,
      specifiers.filter((s) => !s.startsWith('.') && !s.startsWith('node:')),
    );
  }
  return { internal, packages };
}

/** Every cycle's files, by Tarjan's strongly connected components. */
function cycles(edges: Map<string, string[]>): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const lowlinks = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    indices.set(node, index);
    lowlinks.set(node, index++);
    stack.push(node);
    onStack.add(node);
    for (const next of edges.get(node) ?? []) {
      if (!indices.has(next)) {
        visit(next);
        lowlinks.set(node, Math.min(lowlinks.get(node)!, lowlinks.get(next)!));
      } else if (onStack.has(next)) {
        lowlinks.set(node, Math.min(lowlinks.get(node)!, indices.get(next)!));
      }
    }
    if (lowlinks.get(node) === indices.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (edges.get(node) ?? []).includes(node)) found.push(component);
    }
  };
  for (const node of edges.keys()) if (!indices.has(node)) visit(node);
  return found;
}

describe('the import graph', () => {
  const files = ['schemas', 'common', 'engine', 'services', 'workers', 'cli', 'dashboard'].flatMap(sourceFiles);
  const graph = importGraph(files);

  it('puts every source file in a layer', () => {
    assert.deepEqual(
      files.filter((file) => !layerOf(file)),
      [],
    );
    assert.ok(files.length > 50, `found only ${files.length} files`);
  });

  it('has no arrow from a lower layer to a higher one', () => {
    const wrong: string[] = [];
    for (const [file, targets] of graph.internal) {
      const from = layerOf(file)!;
      const allowed = new Set([from, ...LAYERS.find((layer) => layer.name === from)!.may]);
      for (const target of targets) {
        const to = layerOf(target);
        if (!to || !allowed.has(to)) wrong.push(`${file} (${from}) -> ${target} (${to ?? 'outside the layers'})`);
      }
    }
    assert.deepEqual(wrong, []);
  });

  it('loads tfjs and sharp only in the engine and the processes and threads that run it', () => {
    const wrong = [...graph.packages].flatMap(([file, packages]) =>
      packages.filter((name) => HEAVY.test(name) && !HEAVY_ALLOWED.has(layerOf(file)!)).map((name) => `${file} imports ${name}`),
    );
    assert.deepEqual(wrong, []);
  });

  it("keeps tfjs and sharp out of the worker's own process (its children train; tfjs-node-gpu would take the GPU's memory)", () => {
    const reached = (entry: string) => {
      const seen = new Set([entry]);
      for (const file of seen) for (const next of graph.internal.get(file) ?? []) seen.add(next);
      return [...seen].filter((file) => (graph.packages.get(file) ?? []).some((name) => HEAVY.test(name)));
    };
    assert.deepEqual(reached('workers/training/main.ts'), []);
    assert.ok(reached('workers/training/training.processor.ts').length > 0, 'the check can fail: the processor does load tfjs');
  });

  it('has no loop', () => {
    assert.deepEqual(cycles(graph.internal), []);
  });

  it('would catch a loop and a backward arrow (the checks themselves can fail)', () => {
    const loop = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
    ]);
    assert.deepEqual(
      cycles(loop).map((c) => c.sort()),
      [['a.ts', 'b.ts', 'c.ts']],
    );
    assert.equal(layerOf('common/queues.ts'), 'common');
    assert.ok(!LAYERS.find((layer) => layer.name === 'common')!.may.includes('domain'));
  });
});
