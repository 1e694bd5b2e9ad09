import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { before, describe, test } from 'node:test';
import tar from 'tar-stream';
import cacache from 'cacache';
import { CacheStore } from '../src/cache/store.js';
import { digestToIntegrity, parseDigest } from '../src/oci/digest.js';
import { isOneLineError, runCli, tempDir } from './helpers/cli.js';

let work: string;
let env: Record<string, string>;
let src: string;

interface Built { digest: string; diffid: string; cached: boolean }

before(() => {
  work = tempDir('kocache-layer-opts-');
  env = { KOCACHE: join(work, 'cache') };
  src = join(work, 'src');
  mkdirSync(join(src, 'node_modules', 'x'), { recursive: true });
  mkdirSync(join(src, 'logs'));
  writeFileSync(join(src, 'app.js'), 'app');
  chmodSync(join(src, 'app.js'), 0o700);
  writeFileSync(join(src, 'node_modules', 'x', 'i.js'), 'dep');
  writeFileSync(join(src, 'logs', 'a.log'), 'a');
  writeFileSync(join(src, 'logs', 'keep.log'), 'k');
  writeFileSync(join(work, 'ignore'), '# comment\nnode_modules\n\nlogs/*.log\n!logs/keep.log\n');
});

async function build(args: string[]): Promise<Built> {
  const r = await runCli(['build', '--import-path', 'example.com/opts', '--build-id', 'fixed-id', ...args], env, { cwd: work });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Built;
}

/** name -> [mode, uid, gid] of every entry of a cached layer blob. */
async function entries(digest: string): Promise<Map<string, [number, number, number]>> {
  const r = await runCli(['ls', '--json'], env);
  const row = (JSON.parse(r.stdout) as { digest: string }[]).find((x) => x.digest === digest);
  assert.ok(row, `${digest} is in the cache`);
  const blob = await cacache.get.byDigest(env.KOCACHE!, digestToIntegrity(parseDigest(digest)));
  const out = new Map<string, [number, number, number]>();
  const extract = tar.extract();
  Readable.from([blob]).pipe(createGunzip()).pipe(extract);
  for await (const e of extract) {
    out.set(e.header.name, [e.header.mode!, e.header.uid!, e.header.gid!]);
    e.resume();
  }
  return out;
}

describe('per-layer owner, modes and excludes', () => {
  test('owner from SRC:DEST:UID:GID or --owner; the folders above DEST stay root', async () => {
    const a = await build([`${src}:/srv/app:1000:1001`]);
    const e = await entries(a.digest);
    assert.deepEqual(e.get('srv/'), [0o755, 0, 0]);
    assert.deepEqual(e.get('srv/app/'), [0o755, 1000, 1001]);
    assert.deepEqual(e.get('srv/app/app.js'), [0o755, 1000, 1001]); // 0700 on disk, owner-executable
    const b = await build([`${src}:/srv/app`, '--owner', '1000:1001']);
    assert.equal(b.digest, a.digest, '--owner is the same as the per-layer form');
    assert.equal(b.cached, true);
    const bad = await runCli(['build', `${src}:/srv`, '--import-path', 'x.com/y', '--owner', 'app:app'], env);
    assert.equal(bad.code, 2);
    assert.ok(isOneLineError(bad), bad.stderr);
  });

  test('--mode keep keeps the bits on disk; normalize (default) does not', async () => {
    const norm = await build([`${src}:/m`]);
    const keep = await build([`${src}:/m`, '--mode', 'keep']);
    assert.notEqual(keep.digest, norm.digest);
    assert.equal((await entries(norm.digest)).get('m/app.js')![0], 0o755);
    assert.equal((await entries(norm.digest)).get('m/logs/a.log')![0], 0o644);
    assert.equal((await entries(keep.digest)).get('m/app.js')![0], 0o700);
  });

  test('excludes from flags and a .dockerignore-style file, with ! taking a path back', async () => {
    const all = await build([`${src}:/e`]);
    const some = await build([`${src}:/e`, '--exclude-from', join(work, 'ignore')]);
    assert.notEqual(some.digest, all.digest);
    const names = [...(await entries(some.digest)).keys()];
    assert.deepEqual(names, ['e/', 'e/app.js', 'e/logs/', 'e/logs/keep.log']);
    const flags = await build([`${src}:/e`, '--exclude', 'node_modules', '--exclude', 'logs/*.log', '--exclude', '!logs/keep.log']);
    assert.equal(flags.digest, some.digest, 'the same patterns as flags give the same layer');
    // A folder excluded whole, one file under it taken back: the folder stays, with the layer's owner.
    const back = await build([`${src}:/e`, '--exclude', 'node_modules', '--exclude', 'logs', '--exclude', '!logs/keep.log', '--owner', '7:8']);
    const kept = await entries(back.digest);
    assert.deepEqual([...kept.keys()], ['e/', 'e/app.js', 'e/logs/', 'e/logs/keep.log']);
    assert.deepEqual(kept.get('e/logs/'), [0o755, 7, 8]);
    const missing = await runCli(['build', `${src}:/e`, '--import-path', 'x.com/y', '--exclude-from', join(work, 'nope')], env);
    assert.ok(isOneLineError(missing), missing.stderr);
  });

  test('each setting is part of the cache key, even under one build id', async () => {
    const seen = new Set<string>();
    for (const args of [[`${src}:/k`], [`${src}:/k:1:1`], [`${src}:/k`, '--mode', 'keep'], [`${src}:/k`, '--exclude', 'logs']]) {
      const first = await build(args);
      assert.ok(!seen.has(first.digest), `${args.join(' ')} gave a layer of another setting: the key missed the setting`);
      seen.add(first.digest);
      const again = await build(args);
      assert.equal(again.cached, true);
      assert.equal(again.digest, first.digest);
    }
  });

  test('warm takes the same settings: the build after it is a hit', async () => {
    const args = [`${src}:/w:7:7`, '--mode', 'keep', '--exclude', 'node_modules'];
    const w = await runCli(['warm', '--json', '--import-path', 'example.com/opts', '--build-id', 'warm-id', ...args], env);
    assert.equal(w.code, 0, w.stderr);
    const r = await runCli(['build', '--import-path', 'example.com/opts', '--build-id', 'warm-id', ...args], env);
    const b = JSON.parse(r.stdout) as Built;
    assert.equal(b.cached, true);
    assert.equal(b.digest, (JSON.parse(w.stdout).warmed[0] as { digest: string }).digest);
    assert.deepEqual((await entries(b.digest)).get('w/app.js'), [0o700, 7, 7]);
  });

  test('publish and the project file take the same settings', async () => {
    const dir = join(work, 'proj');
    mkdirSync(dir);
    writeFileSync(join(dir, '.kocache.json'), JSON.stringify({
      base: 'scratch',
      layers: [{ src: '../src', dest: '/srv', owner: '1000:1001' }],
      mode: 'keep',
      exclude: ['node_modules'],
      excludeFrom: '../ignore',
    }));
    const r = await runCli(['publish', '--json', '--output', `oci:${join(dir, 'out')}`], env, { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const manifestDigest = (JSON.parse(r.stdout) as { digest: string }).digest;
    const manifest = JSON.parse(readFileSync(join(dir, 'out', 'blobs', 'sha256', manifestDigest.slice(7)), 'utf8')) as { layers: { digest: string }[] };
    const e = await entries(manifest.layers[0]!.digest);
    assert.deepEqual([...e.keys()], ['srv/', 'srv/app.js', 'srv/logs/', 'srv/logs/keep.log']);
    assert.deepEqual(e.get('srv/app.js'), [0o700, 1000, 1001]);
    writeFileSync(join(dir, '.kocache.json'), JSON.stringify({ base: 'scratch', layers: [{ src: '../src', dest: '/srv', owner: 'root' }] }));
    const bad = await runCli(['publish', '--output', `oci:${join(dir, 'out')}`], env, { cwd: dir });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /layers\[0\]\.owner: want "UID:GID", not "root"/);
  });
});

describe('per-layer settings in the project file', () => {
  test('each layer object may set its own mode and excludes; the file-wide ones still apply to the rest', async () => {
    const dir = join(work, 'proj-layers');
    mkdirSync(dir);
    writeFileSync(join(dir, 'logs.ignore'), 'logs\n');
    writeFileSync(join(dir, '.kocache.json'), JSON.stringify({
      base: 'scratch',
      exclude: ['node_modules', 'logs/*.log'],
      layers: [
        { src: '../src', dest: '/a' },
        { src: '../src', dest: '/b', mode: 'keep', excludeFrom: 'logs.ignore' },
        { src: '../src', dest: '/c', exclude: ['!logs/keep.log', 'app.js'], owner: '5:6' },
      ],
    }));
    const r = await runCli(['publish', '--json', '--output', `oci:${join(dir, 'out')}`], env, { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const manifestDigest = (JSON.parse(r.stdout) as { digest: string }).digest;
    const manifest = JSON.parse(readFileSync(join(dir, 'out', 'blobs', 'sha256', manifestDigest.slice(7)), 'utf8')) as { layers: { digest: string }[] };
    const [a, b, c] = await Promise.all(manifest.layers.map((l) => entries(l.digest)));
    assert.deepEqual([...a!.keys()], ['a/', 'a/app.js', 'a/logs/']);
    assert.equal(a!.get('a/app.js')![0], 0o755, 'the file-wide mode (normalize)');
    assert.deepEqual([...b!.keys()], ['b/', 'b/app.js']);
    assert.equal(b!.get('b/app.js')![0], 0o700, 'its own mode: keep');
    assert.deepEqual([...c!.keys()], ['c/', 'c/logs/', 'c/logs/keep.log'], 'the file-wide excludes, then its own');
    assert.deepEqual(c!.get('c/logs/keep.log'), [0o644, 5, 6]);
    // SRC arguments given on the command line replace the file's layers, their settings with them.
    const args = await runCli(['publish', '--json', '../src:/b', '--output', `oci:${join(dir, 'out2')}`], env, { cwd: dir });
    assert.equal(args.code, 0, args.stderr);
    const m2 = JSON.parse(readFileSync(join(dir, 'out2', 'blobs', 'sha256', (JSON.parse(args.stdout) as { digest: string }).digest.slice(7)), 'utf8')) as { layers: { digest: string }[] };
    assert.deepEqual([...(await entries(m2.layers[0]!.digest)).keys()], ['b/', 'b/app.js', 'b/logs/']);
  });

  test('a bad per-layer setting is one line naming the field, exit 2', async () => {
    const dir = join(work, 'proj-layers-bad');
    mkdirSync(dir);
    const cases: [unknown, RegExp][] = [
      [{ src: '../src', dest: '/x', mode: 'strict' }, /layers\[0\]\.mode: want "normalize" or "keep", not "strict"/],
      [{ src: '../src', dest: '/x', exclude: 'logs' }, /layers\[0\]\.exclude: want an array of \.dockerignore patterns, not "logs"/],
      [{ src: '../src', dest: '/x', exclude: ['ok', ' '] }, /layers\[0\]\.exclude\[1\]: want a pattern, not " "/],
      [{ src: '../src', dest: '/x', excludeFrom: 'missing.ignore' }, /layers\[0\]\.excludeFrom: "missing\.ignore": no such file/],
      [{ src: '../src', dest: '/x', modes: 'keep' }, /layers\[0\]\.modes: unknown field; a layer has "src", "dest", "owner", "mode", "exclude", "excludeFrom"/],
    ];
    for (const [layer, want] of cases) {
      writeFileSync(join(dir, '.kocache.json'), JSON.stringify({ base: 'scratch', layers: [layer] }));
      const r = await runCli(['publish', '--output', `oci:${join(dir, 'out')}`], env, { cwd: dir });
      assert.equal(r.code, 2, `${JSON.stringify(layer)}: ${r.stderr}`);
      assert.ok(isOneLineError(r), r.stderr);
      assert.match(r.stderr, want);
    }
    writeFileSync(join(dir, '.kocache.json'), JSON.stringify({ base: 'scratch', layers: ['../src:/x'], excludeFrom: 'nope' }));
    const top = await runCli(['publish', '--output', `oci:${join(dir, 'out')}`], env, { cwd: dir });
    assert.equal(top.code, 2, top.stderr);
    assert.match(top.stderr, /excludeFrom: "nope": no such file/);
  });
});

describe('names that are not UTF-8', () => {
  test('are tarred with their bytes, as GNU tar does, short and long, files and folders', async () => {
    const root = join(work, 'latin1');
    const p = (rel: string) => Buffer.from(`${root}/${rel}`, 'latin1');
    mkdirSync(root);
    mkdirSync(p('d\xefr'));
    writeFileSync(p('caf\xe9.txt'), 'latin1 name');
    writeFileSync(p('d\xefr/inner'), 'inner');
    writeFileSync(p(`${'l'.repeat(120)}\xe9`), 'long name');
    writeFileSync(p('ok.txt'), 'ok');
    const first = await build([`${root}:/data`]);
    const again = await build([`${root}:/data`]);
    assert.equal(again.cached, true);
    assert.equal(again.digest, first.digest);
    // GNU tar reads the layer back to the very bytes and contents.
    const blob = new CacheStore(env.KOCACHE!).blobPath(parseDigest(first.digest));
    const out = join(work, 'latin1-out');
    mkdirSync(out);
    const { execFileSync } = await import('node:child_process');
    execFileSync('tar', ['xzf', blob, '-C', out]);
    const names = (dir: Buffer) => (readdirSync(dir, { encoding: 'buffer' }) as Buffer[]).map((b) => b.toString('latin1')).sort();
    assert.deepEqual(names(Buffer.from(join(out, 'data'))), names(Buffer.from(root)));
    assert.equal(readFileSync(Buffer.from(`${out}/data/caf\xe9.txt`, 'latin1'), 'utf8'), 'latin1 name');
    assert.equal(readFileSync(Buffer.from(`${out}/data/d\xefr/inner`, 'latin1'), 'utf8'), 'inner');
    assert.equal(readFileSync(Buffer.from(`${out}/data/${'l'.repeat(120)}\xe9`, 'latin1'), 'utf8'), 'long name');
    // The names as GNU tar itself stores them.
    const listed = execFileSync('tar', ['--quoting-style=literal', '-tzf', blob]).toString('latin1').trim().split('\n');
    assert.deepEqual(listed, ['data/', 'data/caf\xe9.txt', 'data/d\xefr/', 'data/d\xefr/inner', `data/${'l'.repeat(120)}\xe9`, 'data/ok.txt']);
  });
});
