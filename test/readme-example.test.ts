import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { helloOut } from './helpers/image-fixtures.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The README's library example, as written there, with `kocache` pointing at this build. */
function example(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Library'));
  const m = /```ts\n([\s\S]*?)```/.exec(section);
  assert.ok(m, 'README has a ts example under "## Library"');
  return m[1]!.replace("from 'kocache'", `from ${JSON.stringify(join(root, 'dist', 'src', 'index.js'))}`);
}

test("the README's library example runs: a build, then the same build from the cache", (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kocache-example-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  helloOut(dir);
  writeFileSync(join(dir, 'example.mjs'), example());
  const env = { ...process.env, KOCACHE: join(dir, 'cache') };
  const run = () => execFileSync(process.execPath, ['example.mjs'], { cwd: dir, env, encoding: 'utf8' }).trim().split(' ');
  const [digest, diffid, cached] = run();
  assert.match(digest!, /^sha256:[0-9a-f]{64}$/);
  assert.match(diffid!, /^sha256:[0-9a-f]{64}$/);
  assert.equal(cached, 'false');
  assert.deepEqual(run(), [digest, diffid, 'true']);
  // close() released the lease: nothing is left in leases/.
  assert.deepEqual(execFileSync('ls', ['-A', join(dir, 'cache', 'leases')], { encoding: 'utf8' }), '');
});
