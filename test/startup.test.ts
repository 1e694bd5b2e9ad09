import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { CLI_JS, tempDir, traceOf } from './helpers/cli.js';
import { startRegistry } from './helpers/registry.js';

const require = createRequire(import.meta.url);
const launch = require(CLI_JS) as {
  compileCacheDir(argv: readonly string[], env: NodeJS.ProcessEnv): string | undefined;
  codeCacheFile(dir: string, v8Version?: string): string;
  looksFresh(argv: readonly string[], env: NodeJS.ProcessEnv): boolean;
};

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

function run(launcher: string, args: string[], env: NodeJS.ProcessEnv): Record<string, number> {
  const r = spawnSync(process.execPath, [launcher, ...args], { env: { ...process.env, KOCACHE_TRACE: '1', ...env }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return traceOf(r.stderr);
}

/** The bundle as another Node line built it: a code cache this V8 does not take. */
function otherLinesBundle(): string {
  const bin = join(tempDir(), 'bin');
  cpSync(dirname(CLI_JS), bin, { recursive: true });
  rmSync(launch.codeCacheFile(bin));
  writeFileSync(launch.codeCacheFile(bin, '0.0.0-other'), 'not for this V8');
  return bin;
}

test("another Node's bundle: a code cache made at run time by a hit, in the kocache cache folder", () => {
  const bin = otherLinesBundle();
  const launcher = join(bin, 'kocache.cjs');
  const cache = join(tempDir(), 'cache');
  const folder = join(cache, 'node-compile-cache');
  const src = join(dirname(cache), 'src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'a.txt'), 'a tree\n');
  const build = ['build', `${src}:/app`, '--import-path', 'example.com/startup'];
  const env = { KOCACHE: cache };
  const made = () => readdirSync(folder).sort();
  const prefix = `cli.cjs.v8-${process.versions.v8}-`;

  // A cold build compiles and leaves a first cache; it never makes the one hits keep.
  assert.equal(run(launcher, build, env)['codecache.compiled'], 1);
  assert.deepEqual(made().map((f) => f.slice(prefix.length).replace(/^\d+-\d+/, '')), ['.first.codecache']);
  // The first hit takes it, then replaces it with its own.
  const hit = run(launcher, build, env);
  assert.equal(hit['codecache.used'], 1, JSON.stringify(hit));
  assert.equal(hit['layer.cached'], 1, JSON.stringify(hit));
  const [hitFile, ...rest] = made();
  assert.deepEqual(rest, []);
  assert.ok(hitFile!.startsWith(prefix) && hitFile!.endsWith('.hit.codecache'), hitFile);
  const bytes = readFileSync(join(folder, hitFile!));
  // Later runs take the hit's cache and leave it as it is, a hit or not.
  assert.equal(run(launcher, build, env)['codecache.used'], 1);
  assert.equal(run(launcher, ['ls'], env)['codecache.used'], 1);
  assert.deepEqual(made(), [hitFile]);
  assert.ok(readFileSync(join(folder, hitFile!)).equals(bytes), 'the hit cache was rewritten');

  // A cache V8 rejects is compiled past, and the next hit makes a good one in its place.
  writeFileSync(join(folder, hitFile!), 'not a code cache');
  assert.equal(run(launcher, ['ls'], env)['codecache.compiled'], 1);
  assert.equal(run(launcher, build, env)['codecache.compiled'], 1);
  assert.equal(run(launcher, build, env)['codecache.used'], 1);

  // A changed bundle (another size) is another name: the old cache is never given to it.
  writeFileSync(join(bin, 'cli.cjs'), `${readFileSync(join(bin, 'cli.cjs'), 'latin1')}\n`, 'latin1');
  assert.equal(run(launcher, ['ls'], env)['codecache.compiled'], 1);
  assert.equal(made().length, 2);
  // NODE_DISABLE_COMPILE_CACHE is honoured, and a throwaway cache keeps none: compiled as usual.
  assert.equal(run(launcher, build, { ...env, NODE_DISABLE_COMPILE_CACHE: '1' })['codecache.compiled'], 1);
  assert.equal(run(launcher, ['ls'], { KOCACHE: 'off' })['codecache.compiled'], 1);
  assert.equal(made().length, 2);
});

test("another Node's bundle: a registry command leaves a code cache the next run takes, though it sets a V8 flag", async () => {
  const reg = await startRegistry();
  try {
    const launcher = join(otherLinesBundle(), 'kocache.cjs');
    const cache = join(tempDir(), 'cache');
    const src = join(dirname(cache), 'src');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'a.txt'), 'a tree\n');
    const publish = (repo: string) => run(launcher, ['publish', '--base', 'scratch', '--repo', `${reg.host}/startup/${repo}:v1`, `${src}:/app`, '--quiet'], { KOCACHE: cache });
    const first = publish('one');
    assert.equal(first['codecache.compiled'], 1, JSON.stringify(first));
    assert.equal(first['wasm.baseline'], 1, 'the command set its V8 flag');
    const folder = join(cache, 'node-compile-cache');
    const [made, ...rest] = readdirSync(folder);
    assert.deepEqual(rest, []);
    const bytes = readFileSync(join(folder, made!));
    // Made before the flag: V8 takes it, and nothing is written again.
    assert.equal(publish('two')['codecache.used'], 1);
    assert.deepEqual(readdirSync(folder), [made]);
    assert.ok(readFileSync(join(folder, made!)).equals(bytes));
  } finally {
    await reg.stop();
  }
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

test("the launcher starts the hashing worker on a first look at a fresh runner's command line", () => {
  const root = tempDir();
  const seen = join(root, 'seen');
  mkdirSync(join(seen, 'stat'), { recursive: true });
  const env = { KOCACHE: join(root, 'empty') };
  const repo = ['--cache-from', 'r.example/c'];
  assert.equal(launch.looksFresh(['publish', 'app:/app', ...repo], env), true);
  assert.equal(launch.looksFresh(['build', 'app:/app', '--cache-repo=r.example/c'], env), true);
  assert.equal(launch.looksFresh(['publish', 'app:/app'], { ...env, KOCACHE_REPO: 'r.example/c' }), true);
  assert.equal(launch.looksFresh(['publish', 'app:/app', ...repo], { KOCACHE: 'off' }), true, 'a throwaway cache has no stamps');
  assert.equal(launch.looksFresh(['publish', 'app:/app'], env), false, 'no registry cache');
  assert.equal(launch.looksFresh(['publish', 'app:/app', ...repo], { KOCACHE: seen }), false, 'stamps saved before');
  assert.equal(launch.looksFresh(['warm', 'r.example/base', ...repo], env), false);
  assert.equal(launch.looksFresh(['publish', 'app:/app', '--', '--cache-from'], env), false, 'after -- nothing is a flag');
});
