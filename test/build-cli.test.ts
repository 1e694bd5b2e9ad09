import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync, symlinkSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { cachedDataVersionTag } from 'node:v8';
import { CacheStore } from '../src/cache/store.js';
import { DEFAULT_GZIP, gzipSpec } from '../src/compress/gzip.js';
import { zstdUnavailable } from '../src/compress/zstd.js';
import { gunzipSync } from 'node:zlib';
import { type BuildOut, CLI, CLI_JS, isOneLineError, runCli, tempDir, traceOf } from './helpers/cli.js';

function tree(root: string, mb = 1): string {
  const src = join(root, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeFileSync(join(src, 'big.bin'), randomBytes(mb << 20));
  writeFileSync(join(src, 'sub', 'a.txt'), 'a\n'.repeat(1000));
  return src;
}

function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, name.name);
      if (name.isDirectory()) walk(p);
      else out.push(p.slice(dir.length));
    }
  };
  walk(dir);
  return out.sort();
}

test('build prints one JSON descriptor; a hit does no tar and no gzip', async () => {
  const dir = tempDir();
  const src = tree(dir);
  const env = { KOCACHE: join(dir, 'cache'), KOCACHE_TRACE: '1' };
  const args = ['build', `${src}:/app`, '--import-path', 'example.com/app', '--platform', 'linux/arm64'];
  const cold = await runCli(args, env);
  assert.equal(cold.code, 0, cold.stderr);
  const first = JSON.parse(cold.stdout) as BuildOut;
  assert.equal(first.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  assert.match(first.digest, /^sha256:[a-f0-9]{64}$/);
  assert.equal(first.cached, false);
  assert.ok(traceOf(cold.stderr)['gzip.in']! > 1 << 20, 'the cold build compressed the tree');
  assert.ok(traceOf(cold.stderr)['tar.out']! > 1 << 20, 'the cold build tarred the tree');

  const warm = await runCli(args, env);
  assert.equal(warm.code, 0, warm.stderr);
  const second = JSON.parse(warm.stdout) as BuildOut;
  assert.deepEqual({ ...second, cached: false }, first);
  assert.equal(second.cached, true);
  const t = traceOf(warm.stderr);
  assert.equal(t['tar.out'] ?? 0, 0, 'a hit writes no tar');
  assert.equal(t['gzip.in'] ?? 0, 0, 'a hit runs no gzip');
  // Start-up is most of a hit: the launcher ran the CLI from the code cache the build made.
  assert.equal(t['codecache.used'], 1, `V8 took the code cache: ${JSON.stringify(t)}`);
  // ...and with no V8 flag set, as in this plain `node`: a flag makes V8 refuse Node's own code
  // cache of its built-in modules too (crypto and fs/promises: ~12 ms to load instead of ~4.5).
  assert.equal(t['v8.tag'], cachedDataVersionTag(), 'no V8 flag on the way to a hit');
  assert.equal(t['wasm.baseline'] ?? 0, 0);
  // Nor any of Node's modules a hit has no use for (each is milliseconds to load).
  const hook = join(dir, 'builtins.cjs');
  writeFileSync(hook, "process.on('exit', () => process.stderr.write('builtins: ' + JSON.stringify(process.moduleLoadList) + '\\n'));\n");
  const hit = spawnSync(process.execPath, ['--require', hook, CLI_JS, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  assert.equal(hit.status, 0, hit.stderr);
  assert.equal((JSON.parse(hit.stdout) as BuildOut).cached, true);
  const loaded = JSON.parse(/^builtins: (.*)$/m.exec(hit.stderr)![1]!) as string[];
  assert.ok(loaded.includes('NativeModule crypto'), 'the list is of what the run loaded');
  for (const name of ['zlib', 'worker_threads', 'tls', 'http', 'child_process']) {
    assert.ok(!loaded.includes(`NativeModule ${name}`), `a hit loaded ${name}`);
  }

  const ls = await runCli(['ls', '--json'], env);
  const rows = JSON.parse(ls.stdout) as { key: string }[];
  // The fingerprint is the content: its key names neither the import path nor the platform.
  assert.deepEqual(rows.map((r) => r.key).filter((k) => /^(tree|bin)\//.test(k)).sort(), [
    `bin/diffid/${first.diffid}/${gzipSpec(DEFAULT_GZIP)}`,
    rows.find((r) => r.key.startsWith('tree/1/fp:'))?.key,
  ].sort());
  assert.match(rows.find((r) => r.key.startsWith('tree/'))!.key, /^tree\/1\/fp:[a-f0-9]{64}\/tar1,dest=\/app,/);
});

test('the gzip level is part of the key: another level is another blob of the same diffid', async () => {
  const dir = tempDir();
  const src = tree(dir);
  const env = { KOCACHE: join(dir, 'cache') };
  const base = ['build', `${src}:/app`, '--import-path', 'example.com/level'];
  const dflt = JSON.parse((await runCli(base, env)).stdout) as BuildOut;
  const l9 = JSON.parse((await runCli([...base, '--level', '9'], env)).stdout) as BuildOut;
  assert.equal(l9.cached, false, 'a level not built before is a miss');
  assert.equal(l9.diffid, dflt.diffid);
  assert.notEqual(l9.digest, dflt.digest);
  const again = JSON.parse((await runCli([...base, '--level', String(DEFAULT_GZIP.level)], env)).stdout) as BuildOut;
  assert.deepEqual(again, { ...dflt, cached: true });
  const gz = execFileSync('gzip', ['-dc'], { maxBuffer: 64 << 20, input: readFileSync(new CacheStore(join(dir, 'cache')).blobPath(l9.digest as `sha256:${string}`)) });
  assert.equal(`sha256:${createHash('sha256').update(gz).digest('hex')}`, dflt.diffid, 'gzip reads the level-9 blob back to the same tar');
});

test('a fingerprint answers for any platform and import path; a --build-id only within its own', async () => {
  const dir = tempDir();
  const src = tree(dir);
  const env = { KOCACHE: join(dir, 'cache'), KOCACHE_TRACE: '1' };
  const run = async (args: string[]) => {
    const r = await runCli(['build', `${src}:/app`, ...args], env);
    assert.equal(r.code, 0, r.stderr);
    return { out: JSON.parse(r.stdout) as BuildOut, trace: traceOf(r.stderr) };
  };
  const a = await run(['--import-path', 'example.com/app', '--platform', 'linux/amd64']);
  assert.equal(a.out.cached, false);
  for (const other of [['--import-path', 'example.com/app', '--platform', 'linux/arm/v7'], ['--import-path', 'registry.example/elsewhere']]) {
    const b = await run(other);
    assert.deepEqual(b.out, { ...a.out, cached: true }, `same files, same layer: ${other.join(' ')}`);
    assert.equal(b.trace['tar.out'] ?? 0, 0);
    assert.equal(b.trace['gzip.in'] ?? 0, 0);
  }

  // A caller's id vouches for the files only where it was given: under another import path or
  // platform the same id may name other files, so there the tree itself is what answers.
  const id = ['--build-id', 'lock-1'];
  assert.equal((await run(['--import-path', 'one', ...id])).out.cached, true, 'a miss on the id, a hit on the fingerprint');
  writeFileSync(join(src, 'sub', 'a.txt'), 'other files, same id');
  assert.equal((await run(['--import-path', 'one', ...id])).out.cached, true, 'the id vouches within its import path');
  const two = await run(['--import-path', 'two', ...id]);
  assert.equal(two.out.cached, false, 'not across import paths');
  assert.notEqual(two.out.diffid, a.out.diffid);
  const arm = await run(['--import-path', 'one', '--platform', 'linux/arm64', ...id]);
  assert.equal(arm.out.cached, true, 'the changed files were built under two');
  assert.equal(arm.out.diffid, two.out.diffid, 'by their fingerprint, not by the id one recorded for other files');
});

test('--build-id: the caller-known id is the key', async () => {
  const dir = tempDir();
  const src = tree(dir);
  const env = { KOCACHE: join(dir, 'cache') };
  const args = ['build', `${src}:/app`, '--import-path', 'x', '--build-id', 'lock-abc'];
  const first = JSON.parse((await runCli(args, env)).stdout) as BuildOut;
  writeFileSync(join(src, 'sub', 'a.txt'), 'changed');
  const second = JSON.parse((await runCli(args, env)).stdout) as BuildOut;
  assert.equal(second.cached, true, 'same build id, so the caller vouches the input is the same');
  assert.equal(second.digest, first.digest);
  const third = JSON.parse((await runCli([...args.slice(0, -1), 'lock-def'], env)).stdout) as BuildOut;
  assert.equal(third.cached, false);
  assert.notEqual(third.digest, first.digest);
});

test('two processes building the same key at once both succeed with the same answer', async () => {
  const dir = tempDir();
  const src = tree(dir, 8);
  const env = { KOCACHE: join(dir, 'cache') };
  const args = ['build', `${src}:/app`, '--import-path', 'example.com/race'];
  const results = await Promise.all([runCli(args, env), runCli(args, env), runCli(args, env)]);
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const outs = results.map((r) => JSON.parse(r.stdout) as BuildOut);
  assert.equal(new Set(outs.map((o) => o.digest)).size, 1);
  assert.equal(new Set(outs.map((o) => o.diffid)).size, 1);
  const store = new CacheStore(join(dir, 'cache'));
  assert.equal(await store.verifyBlob(outs[0]!.digest as `sha256:${string}`, outs[0]!.size), 'ok');
  const again = JSON.parse((await runCli(args, env)).stdout) as BuildOut;
  assert.equal(again.cached, true);
});

test('SIGKILL in the middle of a build leaves nothing that serves wrong bytes; the next build succeeds', async () => {
  const dir = tempDir();
  const src = tree(dir, 48);
  const cacheDir = join(dir, 'cache');
  const args = ['build', `${src}:/app`, '--import-path', 'example.com/kill', '--jobs', '1'];
  // Kill once the writer has started its temp file, i.e. truly mid-write.
  const child = spawn(CLI, args, { env: { ...process.env, KOCACHE: cacheDir }, stdio: 'ignore' });
  const tmp = join(cacheDir, 'tmp');
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && !(existsSync(tmp) && readdirSync(tmp).length > 0)) await new Promise((r) => setTimeout(r, 5));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.ok(existsSync(tmp) && readdirSync(tmp).length > 0, 'killed while a temp file was being written');
  const store = new CacheStore(cacheDir);
  assert.equal((await store.listRecords()).length, 0, 'no index entry from the killed build');

  const after = await runCli(args, { KOCACHE: cacheDir });
  assert.equal(after.code, 0, after.stderr);
  const out = JSON.parse(after.stdout) as BuildOut;
  assert.equal(out.cached, false);
  const fresh = JSON.parse((await runCli(args, { KOCACHE: join(dir, 'fresh-cache') })).stdout) as BuildOut;
  assert.equal(out.digest, fresh.digest, 'same bytes as a build that was never interrupted');
  for (const r of await store.listRecords()) assert.equal(await store.verifyBlob(r.digest, r.size), 'ok', r.key);
});

test('a flipped byte in a cached blob is detected, dropped and rebuilt; the command says so and succeeds', async () => {
  const dir = tempDir();
  const src = tree(dir, 2);
  const env = { KOCACHE: join(dir, 'cache') };
  const args = ['build', `${src}:/app`, '--import-path', 'example.com/corrupt'];
  const first = JSON.parse((await runCli(args, env)).stdout) as BuildOut;
  const store = new CacheStore(join(dir, 'cache'));
  rewriteByteInPlace(store.blobPath(first.digest as `sha256:${string}`), true);

  const again = await runCli(args, env);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /corrupt/);
  const out = JSON.parse(again.stdout) as BuildOut;
  assert.equal(out.cached, false);
  assert.equal(out.digest, first.digest);
  assert.equal(await store.verifyBlob(out.digest as `sha256:${string}`, out.size), 'ok');
  const third = JSON.parse((await runCli(args, env)).stdout) as BuildOut;
  assert.equal(third.cached, true);
});

function rewriteByteInPlace(path: string, flip: boolean): void {
  chmodSync(path, 0o644); // cacache leaves content read-only
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  const at = Math.floor(statSync(path).size / 2);
  readSync(fd, b, 0, 1, at);
  if (flip) b[0] = b[0]! ^ 0xff;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

test('a hit re-hashes its blob only when the file was written since it last hashed right (verified stamp)', async () => {
  const dir = tempDir();
  const src = tree(dir, 2);
  const env = { KOCACHE: join(dir, 'cache'), KOCACHE_TRACE: '1' };
  const args = ['build', `${src}:/app`, '--import-path', 'example.com/stamp'];
  const cold = JSON.parse((await runCli(args, env)).stdout) as BuildOut;
  const hashed = async (): Promise<{ out: BuildOut; verified: number; stderr: string }> => {
    const r = await runCli(args, env);
    assert.equal(r.code, 0, r.stderr);
    return { out: JSON.parse(r.stdout) as BuildOut, verified: traceOf(r.stderr)['blob.verify'] ?? 0, stderr: r.stderr };
  };
  // The build hashed the blob as it wrote it, and stamped it then.
  const first = await hashed();
  assert.equal(first.out.cached, true);
  assert.equal(first.verified, 0, 'a blob the build just wrote is not read again by the first hit');

  const path = new CacheStore(join(dir, 'cache')).blobPath(cold.digest as `sha256:${string}`);
  rewriteByteInPlace(path, false); // same bytes, but written: the stamp no longer vouches for them
  const rewritten = await hashed();
  assert.equal(rewritten.out.cached, true);
  assert.equal(rewritten.verified, cold.size);
  assert.equal((await hashed()).verified, 0, 'the hit that hashed it right stamped it again');

  rewriteByteInPlace(path, true); // a flipped byte after the blob was stamped
  const flipped = await hashed();
  assert.match(flipped.stderr, /corrupt/);
  assert.equal(flipped.out.cached, false);
  assert.equal(flipped.out.digest, cold.digest);
  const healed = await hashed();
  assert.equal(healed.out.cached, true);
  assert.equal(healed.verified, 0, 'the rebuilt blob was stamped as it was written');
});

test('a big layer hashes its diffid (and a first build its files) on a worker thread, as one thread would', async () => {
  const dir = tempDir();
  const small = tree(join(dir, 'small'));
  const big = tree(join(dir, 'big'), 33);
  const build = async (src: string, cache: string, extra: string[] = []) => {
    const r = await runCli(['build', `${src}:/app`, '--import-path', 'example.com/big', ...extra], { KOCACHE: join(dir, cache), KOCACHE_TRACE: '1' });
    assert.equal(r.code, 0, r.stderr);
    return { out: JSON.parse(r.stdout) as BuildOut, trace: traceOf(r.stderr) };
  };
  const blob = (cache: string, d: string) => readFileSync(new CacheStore(join(dir, cache)).blobPath(d as `sha256:${string}`));
  const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const s = await build(small, 'one');
  assert.equal(s.trace['hash.worker'] ?? 0, 0, 'a small layer starts no worker');
  assert.equal(s.out.diffid, sha(gunzipSync(blob('one', s.out.digest))));
  // The first build with these tar settings in a cache takes the files' hashes from the tar.
  const g = await build(big, 'two');
  assert.equal(g.trace['hash.worker'], g.trace['tar.out'], 'every tar byte went to the worker');
  assert.equal(g.trace['tar.files.worker'], 2, 'both files hashed by the worker');
  assert.equal(g.trace['file.hash'] ?? 0, 0, 'none on the main thread');
  assert.equal(g.out.diffid, sha(gunzipSync(blob('two', g.out.digest))));
  // In the cache that built the small tree, the big one is fingerprinted by hashing its files on
  // their own: the same fingerprint as the worker's hashes gave, so a cache that has both hits.
  const f = await build(big, 'one');
  assert.equal(f.out.cached, false);
  assert.equal(f.trace['tar.files.worker'] ?? 0, 0);
  assert.deepEqual({ ...f.out }, { ...g.out });
  const again = await build(big, 'two');
  assert.equal(again.out.cached, true);
  // An edit: the worker's block keys find the blocks to copy, and the layer is the cold one's bytes.
  writeFileSync(join(big, 'sub', 'a.txt'), 'b\n'.repeat(1000));
  const edit = await build(big, 'two');
  assert.ok(edit.trace['gzip.reused']! > 30 << 20, `blocks copied: ${JSON.stringify(edit.trace)}`);
  assert.equal(edit.trace['hash.worker'], edit.trace['tar.out']);
  const cold = await build(big, 'four');
  assert.deepEqual(edit.out, cold.out);
  if (zstdUnavailable()) return; // Node 20: no zstd layers
  const z = await build(big, 'three', ['--compression', 'zstd']);
  assert.equal(z.trace['hash.worker'], z.trace['tar.out']);
  assert.equal(z.trace['tar.files.worker'], 2);
  assert.equal(z.out.diffid, cold.out.diffid, 'the same tar whatever the compression (the edited tree)');
  const tar = execFileSync('zstd', ['-dc'], { maxBuffer: 64 << 20, input: blob('three', z.out.digest) });
  assert.equal(z.out.diffid, sha(tar));
});

test('bad input: one line on stderr, non-zero exit, no stack trace, cache untouched', async () => {
  const dir = tempDir();
  const src = tree(dir);
  const cacheDir = join(dir, 'cache');
  const env = { KOCACHE: cacheDir };
  await runCli(['build', `${src}:/app`, '--import-path', 'ok'], env);
  const before = listFiles(cacheDir);
  mkdirSync(join(dir, 'with-fifo'));
  execFileSync('mkfifo', [join(dir, 'with-fifo', 'pipe')]);
  const cases: [string, string[], RegExp][] = [
    ['missing path', ['build', join(dir, 'nope'), '--import-path', 'x'], /nope.*no such file/],
    ['bad platform', ['build', src, '--import-path', 'x', '--platform', 'linux'], /invalid platform "linux"/],
    ['unknown arch', ['build', src, '--import-path', 'x', '--platform', 'linux/amd65'], /unknown architecture "amd65"/],
    ['empty import path', ['build', src, '--import-path', ''], /empty import path/],
    ['no import path', ['build', src], /import-path/],
    ['relative destination', ['build', `${src}:/app/../..`, '--import-path', 'x'], /must not contain \.\./],
    ['a named pipe', ['build', join(dir, 'with-fifo'), '--import-path', 'x'], /named pipe/],
    ['unknown command', ['frobnicate'], /Unknown argument|Unknown command/i],
    ['level out of range', ['build', src, '--import-path', 'x', '--level', '10'], /--level must be a whole number from 1 to 9/],
  ];
  for (const [name, args, re] of cases) {
    const r = await runCli(args, env);
    assert.ok(isOneLineError(r), `${name}: want one line and non-zero exit, got ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, re, name);
  }
  assert.deepEqual(listFiles(cacheDir), before, 'the cache did not change');
});

test('a cache folder that cannot be made is a one-line error, also under /proc (where Node 20\'s recursive mkdir spins)', () => {
  const dir = tempDir();
  const src = tree(dir);
  for (const [cacheDir, re] of [
    ['/proc/kocache-test/cache', /cannot create cache directory \/proc\/kocache-test\/cache: no such file or directory/],
    [join(src, 'big.bin', 'cache'), /cannot write the cache folder .*big\.bin\/cache: a parent is not a folder; .*KOCACHE=off/],
    [join(src, 'big.bin'), /cannot write the cache folder .*big\.bin: it is a file, not a folder; set KOCACHE to a folder/],
  ] as const) {
    const r = spawnSync(process.execPath, [CLI_JS, 'build', src, '--import-path', 'x'], { env: { ...process.env, KOCACHE: cacheDir }, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.signal, null, `${cacheDir}: still running after 30 s`);
    assert.ok(isOneLineError({ code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }), r.stderr);
    assert.match(r.stderr, re);
  }
  // The same for an OCI layout to write there.
  const cache = join(dir, 'cache');
  const file = join(dir, 'a-file');
  writeFileSync(file, 'not a folder');
  for (const [layout, re] of [
    ['/proc/kocache-test/layout', /cannot create OCI layout folder \/proc\/kocache-test\/layout: no such file or directory/],
    [file, /cannot create OCI layout folder .*a-file: it is a file, not a folder$/m],
    [join(file, 'layout'), /cannot create OCI layout folder .*a-file\/layout: a parent is not a folder$/m],
  ] as const) {
    const o = spawnSync(process.execPath, [CLI_JS, 'publish', `${src}:/app`, '--base', 'scratch', '--output', `oci:${layout}`], { env: { ...process.env, KOCACHE: cache }, encoding: 'utf8', timeout: 30_000 });
    assert.equal(o.signal, null, `publish --output oci:${layout}: still running after 30 s`);
    assert.ok(isOneLineError({ code: o.status, signal: o.signal, stdout: o.stdout, stderr: o.stderr }), o.stderr);
    assert.match(o.stderr, re);
    assert.deepEqual(readdirSync(join(cache, 'leases')), [], 'its lease released');
  }
});

test('an unreadable file is named in a one-line error', async (t) => {
  if (process.getuid?.() === 0) {
    // root reads anything, so the build runs as an unprivileged user for this check.
    const dir = tempDir();
    chmodSync(dir, 0o777);
    const src = join(dir, 'src');
    mkdirSync(src, { mode: 0o777 });
    writeFileSync(join(src, 'secret'), 'x', { mode: 0o000 });
    chmodSync(join(src, 'secret'), 0o000);
    const cacheDir = join(dir, 'cache');
    mkdirSync(cacheDir, { mode: 0o777 });
    chmodSync(cacheDir, 0o777);
    // Another file first, so the unreadable one is met mid-layer (a first build reads as it tars).
    writeFileSync(join(src, 'a-readable'), randomBytes(3 << 20), { mode: 0o644 });
    const r = await runCli(['build', src, '--import-path', 'x'], { KOCACHE: cacheDir, HOME: dir }, { uid: 65534, gid: 65534 });
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, /secret: permission denied/);
    assert.deepEqual(listFiles(cacheDir).filter((f) => !f.startsWith('/leases/')), [], 'nothing left in the cache');
    return;
  }
  const dir = tempDir();
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'secret'), 'x', { mode: 0o000 });
  writeFileSync(join(src, 'a-readable'), randomBytes(3 << 20));
  const r = await runCli(['build', src, '--import-path', 'x'], { KOCACHE: join(dir, 'cache') });
  assert.ok(isOneLineError(r), r.stderr);
  assert.match(r.stderr, /secret: permission denied/);
  assert.deepEqual(listFiles(join(dir, 'cache')).filter((f) => !f.startsWith('/leases/')), [], 'nothing left in the cache');
  t.diagnostic('ran as an unprivileged user');
});

test('KOCACHE=off builds with a throwaway cache and leaves nothing behind', async () => {
  const dir = tempDir();
  const src = tree(dir);
  const r = await runCli(['build', src, '--import-path', 'x'], { KOCACHE: 'off', TMPDIR: dir });
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as BuildOut).cached, false);
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('kocache-ephemeral-')), []);
});

test('the launcher keeps NODE_EXTRA_CA_CERTS from Node\'s start-up, and works through a symlink as npm links it', async () => {
  const dir = tempDir();
  // Node warns at start-up about a CA file it cannot load: the warning shows when it read the file.
  const missing = { NODE_EXTRA_CA_CERTS: join(dir, 'no-such-ca.pem') };
  const direct = spawnSync(process.execPath, [CLI_JS, '--version'], { env: { ...process.env, ...missing }, encoding: 'utf8' });
  assert.match(direct.stderr, /extra certs/i, 'Node itself reads the file as it starts');
  const link = join(dir, 'bin', 'kocache');
  mkdirSync(join(dir, 'bin'));
  symlinkSync(CLI, link);
  const r = spawnSync(link, ['--version'], { env: { ...process.env, ...missing }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'not read at start-up through the launcher');
  assert.equal(r.stdout.trim(), direct.stdout.trim());
  // A NODE_OPTIONS that chooses a CA store is left to Node.
  const chosen = spawnSync(link, ['--version'], { env: { ...process.env, ...missing, NODE_OPTIONS: '--use-bundled-ca' }, encoding: 'utf8' });
  assert.match(chosen.stderr, /extra certs/i);
});

test('the executable sizes libuv\'s thread pool (where gzip runs) to the cores, keeping a size the user set', async () => {
  const require = createRequire(import.meta.url);
  const launch = require(CLI_JS) as { threadPoolSize(cores: number): number };
  assert.equal(launch.threadPoolSize(2), 4);
  assert.equal(launch.threadPoolSize(16), 18);
  // The size really reaches the pool: count the process's threads while it compresses.
  const dir = tempDir();
  const src = tree(dir, 24);
  for (const [env, want] of [[{ UV_THREADPOOL_SIZE: '13' }, 13], [{}, launch.threadPoolSize(availableParallelism())]] as const) {
    const child = spawn(CLI, ['build', `${src}:/app`, '--import-path', 'x', '--level', '9'], { env: { ...process.env, KOCACHE: join(dir, `cache-${want}`), ...env }, stdio: 'ignore' });
    let most = 0;
    while (child.exitCode === null) {
      try {
        most = Math.max(most, readdirSync(`/proc/${child.pid}/task`).length);
      } catch { /* exited between checks */ }
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(child.exitCode, 0);
    // Node's own threads (main, V8 platform workers, inspector, signal) come on top of the pool's.
    const base = readdirSync(`/proc/self/task`).length; // this test process: same Node, pool started
    assert.ok(most >= want && most <= base - 4 + want + 2, `threads ${most}, want a pool of ${want} (this process has ${base} with a pool of 4)`);
  }
});

test("the bundled CLI answers as the unbundled one does, and yargs' own checks of our calls to it find nothing", () => {
  // The bundle (scripts/bundle-cli.mjs) gives yargs' help layout a stand-in for string-width
  // (src/cli/startup/bundle-plugins.mjs); unbundled, the real one runs.
  const unbundled = join(CLI_JS, '..', '..', 'src', 'cli', 'main.js');
  const env = { ...process.env, KOCACHE: join(tempDir(), 'cache') };
  for (const args of [['--help'], ...['build', 'publish', 'push', 'warm', 'gc', 'ls'].map((c) => [c, '--help']), ['build'], ['gc', '--dry-rn'], ['nonsense']]) {
    const plain = spawnSync(process.execPath, [unbundled, ...args], { env, encoding: 'utf8' });
    const bundled = spawnSync(process.execPath, [CLI_JS, ...args], { env, encoding: 'utf8' });
    assert.equal(bundled.stdout, plain.stdout, args.join(' '));
    assert.equal(bundled.stderr, plain.stderr, args.join(' '));
    assert.equal(bundled.status, plain.status, args.join(' '));
    if (args.includes('--help')) assert.equal(plain.stderr, '', `yargs warned: ${plain.stderr}`);
  }
});
