import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { bindingLstat, chooseLstat, statsLstat, type Lstat } from '../src/layer/lstat.js';
import { tempDir } from './helpers/cli.js';

const nodeMajor = Number(process.versions.node.split('.')[0]);

/** Every kind of entry a walk meets, and paths that fail in the ways a walk can see. */
function fixture(): { ok: string[]; failing: string[] } {
  const dir = tempDir();
  writeFileSync(join(dir, 'file'), 'some bytes\n');
  // A fractional mtime (set to the microsecond) and an old one, so the ms arithmetic is exercised.
  utimesSync(join(dir, 'file'), 1_600_000_000.123456, 1_500_000_000.654321);
  writeFileSync(join(dir, 'empty'), '');
  writeFileSync(join(dir, 'sparse'), '');
  truncateSync(join(dir, 'sparse'), 5 * 2 ** 30); // 5 GiB: a size past 32 bits
  writeFileSync(join(dir, 'exec'), '#!/bin/sh\n');
  chmodSync(join(dir, 'exec'), 0o4755);
  mkdirSync(join(dir, 'dir'));
  symlinkSync('file', join(dir, 'link'));
  symlinkSync('nowhere', join(dir, 'dangling'));
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  return {
    ok: [dir, 'file', 'empty', 'sparse', 'exec', 'dir', 'link', 'dangling', 'fifo'].map((n) => (n === dir ? dir : join(dir, n))),
    failing: [join(dir, 'missing'), join(dir, 'file', 'under-a-file'), join(dir, 'dangling', 'x')],
  };
}

function errorOf(lstat: Lstat, path: string): Record<string, unknown> {
  try {
    lstat(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { name: e.name, code: e.code, errno: e.errno, syscall: e.syscall, path: e.path, message: e.message };
  }
  assert.fail(`lstat(${path}) did not fail`);
}

test("the binding's lstat gives exactly what fs.lstatSync gives, errors included", () => {
  const fast = bindingLstat();
  // Node 20 is what this project is measured on: there the faster path must really be taken.
  if (nodeMajor === 20) assert.ok(fast, 'no binding lstat on Node 20');
  const { ok, failing } = fixture();
  if (fast) {
    for (const p of ok) assert.deepEqual(fast(p), statsLstat(p), p);
    for (const p of failing) assert.deepEqual(errorOf(fast, p), errorOf(statsLstat, p), p);
    assert.notEqual(chooseLstat(ok[0]!), statsLstat);
  }
  // A probe that cannot be read leaves the public API in use.
  assert.equal(chooseLstat(failing[0]!), statsLstat);
});

test('the binding is not used under the permission model (lstatSync checks access there) or --pending-deprecation', () => {
  const module = new URL('../src/layer/lstat.js', import.meta.url).href;
  const script = `import(${JSON.stringify(module)}).then((m) => console.log(m.bindingLstat() === undefined ? 'public' : 'binding'))`;
  const run = (flags: string[]) => {
    const r = spawnSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
    assert.equal(r.status, 0, r.stderr);
    return { out: r.stdout.trim(), stderr: r.stderr };
  };
  if (nodeMajor === 20) assert.equal(run([]).out, 'binding');
  const permission = nodeMajor >= 23 ? '--permission' : '--experimental-permission';
  assert.equal(run([permission, '--allow-fs-read=*']).out, 'public');
  const pending = run(['--pending-deprecation']);
  assert.equal(pending.out, 'public');
  assert.doesNotMatch(pending.stderr, /DEP0111/);
});
