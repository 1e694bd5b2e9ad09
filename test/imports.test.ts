import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Imports only point down: a folder of src/ may import its own files and folders of a lower
// rank, never a higher one nor a sibling of the same rank, and no module imports itself back
// through a cycle. A new folder must be given its place here on purpose.
const RANK: Record<string, number> = {
  '.': 0, // src/errors.ts
  util: 1,
  oci: 2,
  reference: 3,
  cache: 4,
  compress: 5,
  layer: 6,
  remote: 7,
  image: 8,
  layout: 9,
  tarball: 9,
  regcache: 10,
  publish: 11,
  cli: 12,
};
const TOP = new Set(['index.ts']); // the library's front door may import anything

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const src = join(root, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return /\.c?ts$/.test(e.name) && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** Relative imports of a file, as files of src/ (`.js` -> `.ts`), type-only ones included. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)|require\(\s*['"](\.[^'"]+)['"]\s*\)/g;
  for (const m of text.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    out.push(resolve(dirname(file), spec).replace(/\.(c?)js$/, '.$1ts'));
  }
  return out;
}

/** The top folder of src/ a file belongs to ('.' for files directly in src/). */
function area(file: string): string {
  const rel = relative(src, file);
  return rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : '.';
}

test('every import in src/ points to its own folder or a lower one', () => {
  const wrong: string[] = [];
  for (const file of sources(src)) {
    const rel = relative(src, file);
    if (TOP.has(rel)) continue;
    const from = area(file);
    assert.ok(from in RANK, `src/${from}/ has no rank in test/imports.test.ts: give it one`);
    for (const target of importsOf(file)) {
      const to = area(target);
      if (to === from) continue;
      assert.ok(to in RANK, `src/${to}/ has no rank in test/imports.test.ts: give it one`);
      if (relative(src, target) === 'index.ts' || RANK[to]! >= RANK[from]!) {
        wrong.push(`${rel} -> ${relative(src, target)}`);
      }
    }
  }
  assert.deepEqual(wrong, [], 'imports that point up or sideways');
});

test('no import cycle between modules of src/', () => {
  const files = sources(src);
  const edges = new Map(files.map((f) => [f, importsOf(f)]));
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, path: string[]): void => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      cycles.push([...path.slice(path.indexOf(f)), f].map((p) => relative(src, p)).join(' -> '));
      return;
    }
    state.set(f, 'open');
    for (const t of edges.get(f) ?? []) visit(t, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of files) visit(f, []);
  assert.deepEqual(cycles, []);
});

test('the import check sees what it should', () => {
  // Guards the regular expression: a file known to import across folders must show those imports.
  const found = importsOf(join(src, 'layer', 'build.ts')).map((p) => relative(src, p));
  assert.ok(found.some((p) => p.startsWith('cache/')), `layer/build.ts imports: ${found.join(', ')}`);
});
