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
  symlinkSync('loop', join(dir, 'loop'));
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  mkdirSync(join(dir, 'closed'), { mode: 0o000 });
  return {
    ok: [dir, 'file', 'empty', 'sparse', 'exec', 'dir', 'link', 'dangling', 'loop', 'fifo', 'closed'].map((n) => (n === dir ? dir : join(dir, n))),
    failing: [
      join(dir, 'missing'), // ENOENT
      join(dir, 'file', 'under-a-file'), // ENOTDIR
      join(dir, 'loop', 'x'), // ELOOP
      join(dir, 'n'.repeat(300)), // ENAMETOOLONG
      join(dir, 'nul\0x'), // refused by lstatSync before any system call
      // EACCES, unless root (who may search any directory)
      ...(process.getuid?.() === 0 ? [] : [join(dir, 'closed', 'x')]),
    ],
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
  // A probe that cannot be read leaves the public API in use, and the choice open.
  assert.equal(chooseLstat(failing[0]!), statsLstat);
  if (fast) {
    for (const p of ok) assert.deepEqual(fast(p), statsLstat(p), p);
    for (const p of failing) assert.deepEqual(errorOf(fast, p), errorOf(statsLstat, p), p);
    assert.notEqual(chooseLstat(ok[0]!), statsLstat);
  }
});

test('the binding is not used under the permission model (lstatSync checks access there) or pending deprecation (it would warn)', () => {
  const module = new URL('../src/layer/lstat.js', import.meta.url).href;
  const run = (flags: string[], env: Record<string, string> = {}, before = '') => {
    const script = `${before}import(${JSON.stringify(module)}).then((m) => console.log(m.bindingLstat() === undefined ? 'public' : 'binding'))`;
    const r = spawnSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '', ...env } });
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /DEP0111/);
    return r.stdout.trim();
  };
  if (nodeMajor === 20) assert.equal(run([]), 'binding');
  const permission = nodeMajor >= 23 ? '--permission' : '--experimental-permission';
  assert.equal(run([permission, '--allow-fs-read=*']), 'public');
  // Whether or not process.binding itself is refused there, as Node 20 does.
  assert.equal(run([], {}, "Object.defineProperty(process, 'permission', { value: {} }); "), 'public');
  assert.equal(run(['--pending-deprecation']), 'public');
  assert.equal(run(['--pending_deprecation']), 'public');
  assert.equal(run([], { NODE_PENDING_DEPRECATION: '1' }), 'public');
  assert.equal(run([], { NODE_OPTIONS: '--pending-deprecation' }), 'public');
});
