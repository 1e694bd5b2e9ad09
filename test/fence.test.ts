import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** What reaches into Node's or a dependency's private parts (issue 19's check, as written there). */
const PRIVATE = String.raw`process\.binding|_nodeModulePaths|(cacache|yargs|tar-stream|undici)/lib/|headers\.js`;

/** Where such a reach may be: the start-up fence, and undici's request-only entry (pinned). */
const PINNED = new Set(['src/remote/undici.ts', 'src/types/undici-internals.d.ts']);
const allowed = (file: string) => file.startsWith('src/cli/startup/') || PINNED.has(file);

function hits(): { file: string; line: string }[] {
  const r = spawnSync('grep', ['-rnE', PRIVATE, 'src', 'scripts'], { cwd: root, encoding: 'utf8' });
  assert.ok(r.status === 0 || r.status === 1, `grep failed: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((l) => ({ file: l.slice(0, l.indexOf(':')), line: l }));
}

test("nothing outside src/cli/startup/ (and the pinned undici entry) reaches into Node's or a dependency's internals", () => {
  const outside = hits().filter((h) => !allowed(h.file));
  assert.deepEqual(outside.map((h) => h.line), [], 'move it into src/cli/startup/ with a line in docs/performance.md, or use the public API');
});

test('docs/performance.md names every file that does', () => {
  const register = readFileSync(join(root, 'docs', 'performance.md'), 'utf8');
  const files = [...new Set(hits().map((h) => h.file))];
  for (const f of files) assert.ok(register.includes(f), `${f} reaches into internals and docs/performance.md does not name it`);
});
