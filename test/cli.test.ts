import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import cacache from 'cacache';
import { before, describe, test } from 'node:test';
import { CLI, isOneLineError, runCli, runCliSync, tempDir } from './helpers/cli.js';
import { someBytes } from './helpers/archives.js';

let work: string;
let env: Record<string, string>;

before(() => {
  work = tempDir('kocache-cli-');
  env = { KOCACHE: join(work, 'cache') };
  mkdirSync(join(work, 'out'));
  writeFileSync(join(work, 'out', 'hello'), '#!/bin/sh\necho hello\n');
  chmodSync(join(work, 'out', 'hello'), 0o755);
});

describe('command line', () => {
  test('bare kocache prints the help and succeeds', () => {
    const r = runCliSync([], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /kocache <command> \[options\]/);
    assert.match(r.stdout, /Commands:/);
    assert.match(r.stdout, /kocache inspect/);
  });

  test('global options before the command word, short forms included', async () => {
    const src = `${join(work, 'out')}:/app`;
    const r = runCliSync(['-q', '--json', '-j', '1', 'build', src, '--import-path', 'example.com/q'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(JSON.parse(r.stdout).digest, /^sha256:/);
    const c = runCliSync(['--cache-dir', join(work, 'other'), 'build', src, '--import-path', 'example.com/q'], { KOCACHE: undefined });
    assert.equal(c.code, 0, c.stderr);
    assert.ok(Object.keys(await cacache.ls(join(work, 'other'))).length > 0, '--cache-dir before the command was used');
  });

  test('a bad platform is a usage error: exit 2, one line', () => {
    const r = runCliSync(['build', `${join(work, 'out')}:/app`, '--import-path', 'x.com/y', '--platform', 'linux'], env);
    assert.equal(r.code, 2);
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, /invalid platform "linux"/);
    const p = runCliSync(['publish', `${join(work, 'out')}:/app`, '--base', 'scratch', '--output', `oci:${join(work, 'never')}`, '--platform', 'linux/amd65'], env);
    assert.equal(p.code, 2);
    assert.match(p.stderr, /unknown architecture "amd65"/);
  });

  test('SRC:DEST with a relative DEST says DEST must be absolute', () => {
    const r = runCliSync(['build', `${join(work, 'out')}:app`, '--import-path', 'x.com/y'], env);
    assert.equal(r.code, 2);
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, /DEST "app" must be an absolute path in the image: .*out:\/app/);
  });

  test('a DEST with .., and a SOURCE_DATE_EPOCH a tar header cannot hold, are usage errors: exit 2, one line', () => {
    const r = runCliSync(['build', `${join(work, 'out')}:/a/../b`, '--import-path', 'x.com/y'], env);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, /destination "\/a\/..\/b" must not contain \.\./);
    for (const [epoch, code] of [['8589934591', 0], ['8589934592', 2], ['99999999999999', 2]] as const) {
      const b = runCliSync(['publish', `${join(work, 'out')}:/app`, '--base', 'scratch', '--output', `oci:${join(work, `epoch-${epoch}`)}`], { ...env, SOURCE_DATE_EPOCH: epoch });
      assert.equal(b.code, code, `${epoch}: ${b.stderr}`);
      if (code === 2) {
        assert.ok(isOneLineError(b), b.stderr);
        assert.match(b.stderr, /SOURCE_DATE_EPOCH \d+ is beyond what a tar header holds/);
      }
    }
  });

  test("an unwritable cache folder says to use --cache-dir or KOCACHE=off", async () => {
    chmodSync(work, 0o755); // the source is read as nobody too
    const locked = join(work, 'locked');
    mkdirSync(locked, { mode: 0o555 });
    chmodSync(locked, 0o555);
    // root writes anywhere: run as nobody then (the test files and node are world-readable).
    const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const args = ['build', `${join(work, 'out')}/hello:/app/hello`, '--import-path', 'x.com/y'];
    await Promise.all([
      runCli([...args, '--cache-dir', join(locked, 'c')], { KOCACHE: undefined, HOME: locked }, { ...asUser, cwd: '/' }).then((r) => {
        assert.equal(r.code, 1, r.stderr);
        assert.ok(isOneLineError(r), r.stderr);
        assert.match(r.stderr, /cannot write the cache folder .*locked\/c: permission denied; use --cache-dir DIR .*KOCACHE=off/);
      }),
      runCli(args, { KOCACHE: join(locked, 'c') }, { ...asUser, cwd: '/' }).then((r) => {
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /permission denied; set KOCACHE to a folder you can write, or KOCACHE=off/);
      }),
    ]);
  });

  test('completion prints a script, and the script\'s query answers with commands and options', () => {
    const r = runCliSync(['completion'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /--get-yargs-completions/);
    assert.match(r.stdout, /complete -o bashdefault -o default -F _kocache_yargs_completions kocache/);
    const words = runCliSync(['--get-yargs-completions', 'kocache', ''], env).stdout.split('\n');
    for (const c of ['build', 'publish', 'push', 'inspect', 'du', 'gc', 'warm', 'ls']) assert.ok(words.includes(c), `${c} in ${words.join(' ')}`);
    const opts = runCliSync(['--get-yargs-completions', 'kocache', 'publish', '--'], env).stdout.split('\n');
    assert.ok(opts.includes('--base') && opts.includes('--platform'), opts.join(' '));
    const help = runCliSync(['completion', '--help'], env);
    assert.equal(help.code, 0, help.stderr);
    assert.doesNotMatch(help.stdout, /get-yargs-completions/, 'help, not the script');
    assert.match(help.stdout, /kocache completion >> ~\/\.bashrc/);
    const extra = runCliSync(['completion', 'bash'], env);
    assert.equal(extra.code, 2);
    assert.match(extra.stderr, /^kocache: completion takes no argument .*\$SHELL.*, not "bash"\n$/);
    // Global options are still options: taken, or passed over when naming the stray word.
    assert.equal(runCliSync(['completion', '-q'], env).code, 0);
    assert.match(runCliSync(['--json', 'completion', 'bash'], env).stderr, /, not "bash"\n$/);
    // Every global option with its value (an alias may add them to every command): the same script.
    for (const argv of [
      ['completion', '--cache-dir', join(work, 'c'), '-j', '2', '--compression', 'gzip', '--level', '5', '--no-cache'],
      ['--cache-dir', join(work, 'c'), 'completion', '--jobs=2'],
      // Every spelling yargs takes for them elsewhere.
      ['completion', '-j2', '--no-json', '--json=false', '--no-quiet', '--quiet=true'],
      ['completion', '-qj2'],
    ]) {
      const same = runCliSync(argv, env);
      assert.equal(same.code, 0, `${argv.join(' ')}: ${same.stderr}`);
      assert.equal(same.stdout, r.stdout, argv.join(' '));
    }
    for (const [argv, message] of [
      [['completion', '--json'], /writes a shell script, not JSON/],
      [['completion', '--bogus'], /Unknown argument: bogus/],
      [['completion', '--jobs'], /--jobs needs a value/],
    ] as const) {
      const bad = runCliSync([...argv], env);
      assert.equal(bad.code, 2, argv.join(' '));
      assert.match(bad.stderr, message);
    }
  });

  test('SIGINT and SIGTERM remove the temp files and the lease, and clear the progress line, before exiting', async () => {
    const big = join(work, 'big');
    mkdirSync(big);
    writeFileSync(join(big, 'blob'), someBytes(200 << 20, 'sig'));
    for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      const cache = join(work, `sig-${signal}`);
      const child = spawn(CLI, ['publish', `${big}:/data`, '--base', 'scratch', '--level', '9', '-j', '1', '--output', `oci:${join(work, `sig-out-${signal}`)}`], {
        // Progress drawn on the pipe as on a terminal: the signal must not leave its line behind.
        env: { ...process.env, CI: 'true', KOCACHE: cache, KOCACHE_PROGRESS: 'always' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      // Wait until the layer is being written into the cache's tmp/ and a lease is held.
      const tmp = join(cache, 'tmp');
      const deadline = Date.now() + 60_000;
      while (!(existsSync(tmp) && readdirSync(tmp).length > 0 && readdirSync(join(cache, 'leases')).length > 0 && stderr.includes('\r\x1b[K'))) {
        assert.ok(Date.now() < deadline, `no temp file appeared: ${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(statSync(join(tmp, readdirSync(tmp)[0]!)).isFile());
      child.kill(signal);
      assert.equal(await exited, code, stderr);
      assert.ok(stderr.endsWith('\r\x1b[K'), `${signal}: the progress line is cleared last: ${JSON.stringify(stderr.slice(-80))}`);
      assert.deepEqual(readdirSync(tmp), [], `${signal}: temp files left`);
      assert.deepEqual(readdirSync(join(cache, 'leases')), [], `${signal}: lease left`);
    }
  });
});

describe('du', () => {
  test('sizes by kind, in text and JSON of the documented shape', async () => {
    const cache = join(work, 'du-cache');
    const out = join(work, 'du-out');
    mkdirSync(out);
    writeFileSync(join(out, 'data'), someBytes(300 << 10, 'du'));
    const b = runCliSync(['build', `${out}:/d`, '--import-path', 'example.com/du'], { KOCACHE: cache });
    assert.equal(b.code, 0, b.stderr);
    const layer = JSON.parse(b.stdout) as { size: number };
    const r = runCliSync(['du', '--json'], { KOCACHE: cache });
    assert.equal(r.code, 0, r.stderr);
    const u = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(u), ['dir', 'total', 'kinds', 'index', 'unreferenced', 'stat', 'codeCache', 'temp']);
    assert.deepEqual(Object.keys(u.kinds), ['layers', 'tars', 'base-images', 'archives', 'other']);
    assert.deepEqual(u.kinds.layers, { records: u.kinds.layers.records, blobs: 1, bytes: layer.size });
    assert.ok(u.kinds.layers.records >= 1);
    assert.equal(u.kinds.tars.bytes, 0);
    assert.ok(u.index.records >= 1 && u.index.bytes > 0);
    assert.ok(u.total >= layer.size + u.index.bytes);
    const t = runCliSync(['du'], { KOCACHE: cache });
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^layers\s+\d/m);
    assert.match(t.stdout.trimEnd().split('\n').at(-1)!, /du-cache: .* in all$/);
  });
});

