import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { CLI_JS, tempDir, traceOf } from './helpers/cli.js';

const require = createRequire(import.meta.url);
const launch = require(CLI_JS) as {
  compileCacheDir(argv: readonly string[], env: NodeJS.ProcessEnv): string | undefined;
  codeCacheFile(dir: string, v8Version?: string): string;
};
const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
const nodeHasCompileCache = major > 22 || (major === 22 && minor >= 1);

function hitTwice(launcher: string, cache: string): Record<string, number> {
  const src = join(dirname(cache), 'src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'a.txt'), 'a tree\n');
  const args = [launcher, 'build', `${src}:/app`, '--import-path', 'example.com/startup'];
  const env = { ...process.env, KOCACHE: cache, KOCACHE_TRACE: '1' };
  for (let i = 0; i < 2; i++) {
    const r = spawnSync(process.execPath, args, { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    if (i === 1) return traceOf(r.stderr);
  }
  throw new Error('unreachable');
}

test('the build-time code cache serves the Node that made it, and no compile cache is written then', () => {
  assert.ok(existsSync(launch.codeCacheFile(dirname(CLI_JS))), 'the build made a code cache for this V8');
  const cache = join(tempDir(), 'cache');
  const t = hitTwice(CLI_JS, cache);
  assert.equal(t['codecache.used'], 1, JSON.stringify(t));
  assert.equal(existsSync(join(cache, 'node-compile-cache')), false);
});

test("another Node's bundle: Node's compile cache in the kocache cache folder where Node has one", () => {
  // The bundle as another Node line built it: a code cache this V8 does not take.
  const bin = join(tempDir(), 'bin');
  cpSync(dirname(CLI_JS), bin, { recursive: true });
  rmSync(launch.codeCacheFile(bin));
  writeFileSync(launch.codeCacheFile(bin, '0.0.0-other'), 'not for this V8');
  const cache = join(tempDir(), 'cache');
  const t = hitTwice(join(bin, 'kocache.cjs'), cache);
  if (nodeHasCompileCache) {
    assert.equal(t['compilecache.on'], 1, JSON.stringify(t));
    const versions = readdirSync(join(cache, 'node-compile-cache'));
    assert.ok(versions.some((v) => v.startsWith(`v${process.versions.node}-`)), versions.join(' '));
  } else {
    assert.equal(t['codecache.compiled'], 1, JSON.stringify(t));
    assert.equal(existsSync(join(cache, 'node-compile-cache')), false);
  }
  // NODE_DISABLE_COMPILE_CACHE is honoured: compiled as usual.
  const off = spawnSync(process.execPath, [join(bin, 'kocache.cjs'), 'ls'], { env: { ...process.env, KOCACHE: cache, KOCACHE_TRACE: '1', NODE_DISABLE_COMPILE_CACHE: '1' }, encoding: 'utf8' });
  assert.equal(off.status, 0, off.stderr);
  assert.equal(traceOf(off.stderr)['codecache.compiled'], 1);
});

test('the compile cache folder is found as the cache folder is; a throwaway cache keeps none', () => {
  const env = { HOME: '/home/u' };
  assert.equal(launch.compileCacheDir([], { ...env, KOCACHE: '/c' }), '/c/node-compile-cache');
  assert.equal(launch.compileCacheDir(['build', '--cache-dir', '/d'], env), '/d/node-compile-cache');
  assert.equal(launch.compileCacheDir(['build', '--cache-dir=/e'], env), '/e/node-compile-cache');
  assert.equal(launch.compileCacheDir(['build', '--cache-dir=/e'], { ...env, KOCACHE: '/c' }), '/c/node-compile-cache');
  assert.equal(launch.compileCacheDir([], { ...env, XDG_CACHE_HOME: '/x' }), '/x/kocache/node-compile-cache');
  assert.equal(launch.compileCacheDir([], { ...env, XDG_CACHE_HOME: 'relative' }), join(homedir(), '.cache', 'kocache', 'node-compile-cache'));
  for (const off of ['off', 'OFF', 'none', 'false', '0']) assert.equal(launch.compileCacheDir([], { ...env, KOCACHE: off }), undefined);
  assert.equal(launch.compileCacheDir(['build', '--no-cache'], { ...env, KOCACHE: '/c' }), undefined);
  assert.equal(launch.compileCacheDir(['--', '--cache-dir', '/d'], { ...env, XDG_CACHE_HOME: '/x' }), '/x/kocache/node-compile-cache');
});
