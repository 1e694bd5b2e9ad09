import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { commandLoaders } from '../src/cli/commands/index.js';
import { isOneLineError, runCli, runCliSync, tempDir } from './helpers/cli.js';

/** The options of a command that take a value, as its --help lists them ([string], [number], [array]). */
function valueOptions(command: string): string[] {
  const help = runCliSync([command, '--help']).stdout;
  const options = help.split(/\n(?=Options:)/)[1] ?? '';
  const out: string[] = [];
  for (const line of options.split('\n')) {
    const m = /^\s+(?:-(\w), )?--([\w-]+)\s.*\[(?:string|number|array)\]/.exec(line);
    if (m) out.push(`--${m[2]}`, ...(m[1] ? [`-${m[1]}`] : []));
  }
  return out;
}

/** Arguments under which each command would otherwise go ahead (and succeed or fail for other reasons). */
function validArgs(dir: string): Record<string, string[]> {
  const src = join(dir, 'src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'a.txt'), 'a\n');
  return {
    build: [src, '--import-path', 'example.com/app'],
    publish: [src, '--base', 'scratch', '--output', `oci:${join(dir, 'out')}`],
    push: [join(dir, 'missing.tar'), '127.0.0.1:1/app:v1'],
    warm: [src, '--import-path', 'example.com/app'],
    gc: [],
    ls: [],
    du: [],
    inspect: [`oci:${join(dir, 'missing')}`],
  };
}

test('every option that takes a value, in every command, refuses to be given without one (exit 2, one line)', () => {
  const dir = tempDir();
  const env = { KOCACHE: join(dir, 'cache') };
  const base = validArgs(dir);
  assert.deepEqual(Object.keys(base).sort(), Object.keys(commandLoaders).sort(), 'every command is covered');
  let checked = 0;
  for (const [command, args] of Object.entries(base)) {
    const flags = valueOptions(command);
    assert.ok(flags.includes('--jobs') && flags.includes('--cache-dir'), `${command}: its --help lists the global options`);
    for (const [i, flag] of flags.entries()) {
      // At the end of the line, and (once per command) followed by another option: both leave it without a value.
      for (const tail of i === 0 ? [[flag], [flag, '--json']] : [[flag]]) {
        const r = runCliSync([command, ...args, ...tail], env);
        const out = tail.length > 1 ? { ...r, stderr: (JSON.parse(r.stdout) as { error: { message: string } }).error.message } : r;
        assert.equal(r.code, 2, `kocache ${command} … ${tail.join(' ')}: want exit 2, got ${r.code}: ${r.stderr}${r.stdout}`);
        if (tail.length === 1) assert.ok(isOneLineError(r), `${command} ${flag}: one line: ${r.stderr}`);
        assert.match(out.stderr, new RegExp(`${flag} needs a value`));
        checked++;
      }
    }
  }
  assert.ok(checked > 30, `${checked} cases`);
  assert.ok(!existsSync(join(dir, 'out')), 'no publish went ahead');
});

test('an option given twice where once is meant is refused in every command (exit 2, one line); those --help calls repeatable are taken', () => {
  const dir = tempDir();
  const env = { KOCACHE: join(dir, 'cache') };
  const base = validArgs(dir);
  let refused = 0;
  for (const [command, args] of Object.entries(base)) {
    const help = runCliSync([command, '--help']).stdout;
    for (const flag of valueOptions(command).filter((f) => f.startsWith('--'))) {
      const line = help.split('\n').find((l) => l.includes(`${flag} `)) ?? '';
      const r = runCliSync([command, ...args, flag, 'x1', flag, 'x2'], env);
      if (/repeat/i.test(line) || line.includes('[array]')) {
        assert.doesNotMatch(r.stderr, /given [23] times/, `kocache ${command} ${flag} twice: it is repeatable`);
        continue;
      }
      assert.equal(r.code, 2, `kocache ${command} ${flag} twice: want exit 2, got ${r.code}: ${r.stderr}`);
      assert.ok(isOneLineError(r), `${command} ${flag}: one line: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`${flag} given [23] times: give it once`));
      refused++;
    }
  }
  assert.ok(refused > 30, `${refused} cases`);
});

test('the same options with their values still work, repeated ones included', () => {
  const dir = tempDir();
  const env = { KOCACHE: join(dir, 'cache') };
  const args = validArgs(dir);
  const r = runCliSync(['publish', ...args.publish!, '--platform', 'linux/amd64', '--platform', 'linux/arm64', '--env', 'A=1', '--env', 'B=2', '-j', '2', '--json'], env);
  assert.equal(r.code, 0, r.stderr);
  const w = runCliSync(['warm', ...args.warm!, '--platform', 'linux/amd64', '--platform', 'linux/arm64', '--json'], env);
  assert.equal(w.code, 0, w.stderr);
  assert.equal((JSON.parse(w.stdout).warmed as unknown[]).length, 2);
  // A comma list, as publish takes it; build makes one layer, so it says so.
  const listed = runCliSync(['warm', ...args.warm!, '--platform', 'linux/amd64,linux/arm64', '--json'], env);
  assert.equal(listed.code, 0, listed.stderr);
  assert.deepEqual(JSON.parse(listed.stdout).warmed, JSON.parse(w.stdout).warmed.map((x: object) => ({ ...x, cached: true })));
  const one = runCliSync(['build', ...args.build!, '--platform', 'linux/amd64,linux/arm64'], env);
  assert.equal(one.code, 2, one.stderr);
  assert.ok(isOneLineError(one), one.stderr);
  assert.match(one.stderr, /build makes one layer for one --platform/);
});

test('an empty or blank --build-id is refused (exit 2, one line), by build and by warm', () => {
  const dir = tempDir();
  const env = { KOCACHE: join(dir, 'cache') };
  const args = validArgs(dir);
  for (const id of ['', ' ', '\t \t', 'a\nb']) {
    for (const command of ['build', 'warm'] as const) {
      const r = runCliSync([command, ...args[command]!, '--build-id', id], env);
      assert.equal(r.code, 2, `${command} --build-id ${JSON.stringify(id)}: ${r.stdout}${r.stderr}`);
      assert.ok(isOneLineError(r), r.stderr);
      assert.match(r.stderr, /build id/);
    }
  }
  const ok = runCliSync(['build', ...args.build!, '--build-id', 'tree-1'], env);
  assert.equal(ok.code, 0, ok.stderr);
});

test('--no-cache with --cache-dir is refused by every command that opens the cache (exit 2, one line); nothing is made there', () => {
  const dir = tempDir();
  const args = validArgs(dir);
  const cacheDir = join(dir, 'asked-for');
  for (const command of ['build', 'publish', 'warm', 'gc', 'ls', 'du'] as const) {
    const r = runCliSync([command, ...args[command]!, '--no-cache', '--cache-dir', cacheDir], { KOCACHE: '' });
    assert.equal(r.code, 2, `${command}: ${r.stdout}${r.stderr}`);
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, /--no-cache .* --cache-dir/);
  }
  assert.equal(existsSync(cacheDir), false);
});

test('-q and -j are listed once, in the top-level help and in every command\'s, and work before the command word too', () => {
  for (const command of ['', ...Object.keys(commandLoaders)]) {
    const help = runCliSync(command ? [command, '--help'] : ['--help']).stdout;
    for (const [short, long] of [['-q', '--quiet'], ['-j', '--jobs']] as const) {
      const lines = help.split('\n').filter((l) => l.includes(long));
      assert.equal(lines.length, 1, `kocache ${command} --help: ${long} on one line`);
      assert.match(lines[0]!, new RegExp(`^\\s+${short}, ${long}\\s`), `kocache ${command} --help: ${lines[0]}`);
    }
  }
  const dir = tempDir();
  const env = { KOCACHE: join(dir, 'cache') };
  const args = validArgs(dir);
  for (const argv of [['-q', '-j', '1', 'build', ...args.build!], ['build', '-q', '-j', '1', ...args.build!]]) {
    const r = runCliSync(argv, env);
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr, '', 'quiet');
  }
  const bad = runCliSync(['-j', 'abc', 'build', ...args.build!], env);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--jobs must be a whole number/);
});

test('warm without --import-path: a target that reads as a path is named as a layer source needing --import-path (exit 2, one line, cache untouched)', async () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'out'));
  writeFileSync(join(dir, 'out', 'a.txt'), 'a\n');
  const env = { KOCACHE: join(dir, 'cache') };
  for (const target of ['./out:/app', './out', '../out', join(dir, 'out'), 'out:/app', 'out', '.']) {
    const r = await runCli(['warm', target], env, { cwd: dir });
    assert.equal(r.code, 2, `warm ${target}: ${r.stdout}${r.stderr}`);
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, new RegExp(`${JSON.stringify(target).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is a layer source \\(a path\\): warming layers needs --import-path`), `warm ${target}`);
  }
  // Among references too; a bare name that is also a folder here says how to name the image.
  const mixed = await runCli(['warm', 'alpine:3', './out:/app'], env, { cwd: dir });
  assert.match(mixed.stderr, /"\.\/out:\/app" is a layer source/);
  assert.match((await runCli(['warm', 'out'], env, { cwd: dir })).stderr, /name its registry: docker\.io\/library\/out:latest/);
  assert.equal(existsSync(join(dir, 'cache')), false, 'nothing was cached');
  const ok = await runCli(['warm', './out:/app', '--import-path', 'example.com/app'], env, { cwd: dir });
  assert.equal(ok.code, 0, ok.stderr);
});

test('an empty, blank or invalid --import-path is bad usage (exit 2, one line), in build, warm and publish', () => {
  const dir = tempDir();
  const env = { KOCACHE: join(dir, 'cache') };
  const args = validArgs(dir);
  for (const [ip, re] of [['', /empty import path/], [' ', /empty import path/], ['\t', /empty import path/], ['/abs', /invalid import path "\/abs"/], ['a/../b', /invalid import path/]] as const) {
    for (const command of ['build', 'warm', 'publish'] as const) {
      const argv = command === 'publish' ? [...args.publish!, '--import-path', ip] : [...args[command]!.slice(0, 1), '--import-path', ip];
      const r = runCliSync([command, ...argv], env);
      assert.equal(r.code, 2, `${command} --import-path ${JSON.stringify(ip)}: ${r.stdout}${r.stderr}`);
      assert.ok(isOneLineError(r), r.stderr);
      assert.match(r.stderr, re);
    }
  }
  assert.equal(existsSync(join(dir, 'out')), false, 'no publish went ahead');
});

test('a tag with a \'/\' in it is named as such, by inspect and by publish --repo (exit 2, one line)', () => {
  const dir = tempDir();
  const env = { KOCACHE: join(dir, 'cache') };
  const args = validArgs(dir);
  for (const argv of [['inspect', '127.0.0.1:5000/x:Bad/Tag'], ['publish', ...args.publish!, '--repo', '127.0.0.1:5000/x:Bad/Tag']]) {
    const r = runCliSync(argv, env);
    assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, /invalid image reference "127\.0\.0\.1:5000\/x:Bad\/Tag": bad tag "Bad\/Tag": a tag cannot contain '\/'$/m);
    assert.doesNotMatch(r.stderr, /lowercase/);
  }
  assert.equal(existsSync(join(dir, 'out')), false, 'no publish went ahead');
});

test('an unknown option is named first, whatever else is missing (exit 2, one line)', () => {
  const dir = tempDir();
  const env = { KOCACHE: join(dir, 'cache') };
  const src = validArgs(dir).build![0]!;
  const cases: [string[], RegExp][] = [
    [['--versoin'], /^kocache: Unknown argument: versoin$/m],
    [['build', `${src}:/app`, '--import-paht', 'x'], /^kocache: Unknown argument: import-paht$/m],
    [['build', '--import-paht', 'x'], /^kocache: Unknown argument: import-paht$/m],
    [['publish', '--bsae', 'scratch'], /^kocache: Unknown argument: bsae$/m],
    [['inspect', '--jsno'], /^kocache: Unknown argument: jsno$/m],
  ];
  for (const [argv, re] of cases) {
    const r = runCliSync(argv, env);
    assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, re, argv.join(' '));
  }
  // With nothing unknown, what is missing is still said.
  for (const [argv, re] of [[['--json'], /name a command/], [['-q'], /name a command/], [['build', `${src}:/app`], /Missing required argument: import-path/], [['build', '--import-path', 'x'], /Not enough non-option arguments/]] as const) {
    const r = runCliSync([...argv], env);
    assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr || r.stdout, re, argv.join(' '));
  }
  assert.equal(existsSync(join(dir, 'cache')), false, 'nothing ran');
});

test('ls, du and gc on a cache folder that is not there: an empty cache, and nothing made', () => {
  const dir = tempDir();
  const cacheDir = join(dir, 'nope', 'cache');
  for (const argv of [['ls'], ['du'], ['gc', '--dry-run'], ['gc'], ['du', '--json'], ['gc', '--json']]) {
    const r = runCliSync([...argv, '--cache-dir', cacheDir], { KOCACHE: '' });
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr, '', argv.join(' '));
    if (argv[0] === 'ls') assert.match(r.stdout, /^\(cache is empty\)$/m);
    if (argv.join(' ') === 'du') assert.match(r.stdout, /: 0 B in all$/m);
    if (argv.join(' ') === 'gc --dry-run') assert.match(r.stdout, /^gc: would remove 0 blobs.*cache 0 B -> 0 B$/m);
    if (argv.join(' ') === 'gc') assert.match(r.stdout, /^gc: removed 0 blobs.*cache 0 B -> 0 B$/m);
    if (argv.join(' ') === 'du --json') assert.equal(JSON.parse(r.stdout).total, 0);
    if (argv.join(' ') === 'gc --json') assert.equal(JSON.parse(r.stdout).dryRun, false);
    assert.equal(existsSync(join(dir, 'nope')), false, `${argv.join(' ')} made the folder`);
  }
  // An existing cache is still used as before.
  mkdirSync(cacheDir, { recursive: true });
  assert.equal(runCliSync(['ls', '--cache-dir', cacheDir], { KOCACHE: '' }).code, 0);
});

test('SRC:DEST:UID:GID with names where the ids go is refused (exit 2, one line); a DEST with a colon still works', () => {
  const dir = tempDir();
  const env = { KOCACHE: join(dir, 'cache') };
  const src = validArgs(dir).build![0]!;
  const records = () => runCliSync(['ls', '--json'], env).stdout;
  const before = records();
  for (const owner of ['nonroot:nonroot', 'root:0', '1000:app', 'www-data:www-data', 'app$:staff']) {
    for (const command of ['build', 'warm'] as const) {
      const r = runCliSync([command, `${src}:/app:${owner}`, '--import-path', 'example.com/app'], env);
      assert.equal(r.code, 2, `${command} ${owner}: ${r.stdout}${r.stderr}`);
      assert.ok(isOneLineError(r), r.stderr);
      assert.match(r.stderr, new RegExp(`the owner "${owner.replace('$', '\\$')}" must be numeric UID:GID .*, e\\.g\\. .*:/app:65532:65532$`, 'm'));
    }
  }
  const pub = runCliSync(['publish', `${src}:/app:nonroot:nonroot`, '--base', 'scratch', '--output', `oci:${join(dir, 'out')}`], env);
  assert.equal(pub.code, 2, pub.stderr);
  assert.match(pub.stderr, /must be numeric UID:GID/);
  assert.equal(records(), before, 'nothing was built');
  // Numeric ids are an owner; one field after a colon, or a trailing '/', is a DEST.
  for (const dest of ['/app:65532:65532', '/app:v1', '/srv/a:b:c/', '/data/x:1.0']) {
    const r = runCliSync(['build', `${src}:${dest}`, '--import-path', 'example.com/app'], env);
    assert.equal(r.code, 0, `${dest}: ${r.stderr}`);
  }
});

test('ls, du and gc on a cache folder whose parent is a file: one line saying so, as build says it (not an empty cache)', () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'afile'), 'x');
  const args = validArgs(dir);
  for (const command of ['ls', 'du', 'gc', 'build'] as const) {
    const r = runCliSync([command, ...args[command]!], { KOCACHE: join(dir, 'afile', 'sub') });
    assert.equal(r.code, 1, `${command}: ${r.stdout}${r.stderr}`);
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, /cache folder .*afile\/sub: a parent is not a folder/);
  }
});

test('bad usage found in the arguments of build, warm and publish makes no cache folder and warms nothing (exit 2, one line)', () => {
  const dir = tempDir();
  const cache = join(dir, 'cache');
  const env = { KOCACHE: cache };
  const src = validArgs(dir).build![0]!;
  const out = `oci:${join(dir, 'out')}`;
  const cases: [string[], RegExp][] = [
    [['build', src, '--import-path', 'example.com/app', '--build-id', ''], /empty build id/],
    [['warm', src, '--import-path', 'example.com/app', '--build-id', ' '], /empty build id/],
    [['warm', `${src}:app`, '--import-path', 'example.com/app'], /DEST "app" must be an absolute path/],
    [['warm', src, `${src}:/app:nonroot:nonroot`, '--import-path', 'example.com/app'], /must be numeric UID:GID/],
    // The first reference would be fetched (from a registry that is not there) before the second was read.
    [['warm', '127.0.0.1:1/base:v1', 'BAD REF'], /invalid image reference "BAD REF"/],
    [['publish', `${src}:app`, '--base', 'scratch', '--output', out], /DEST "app" must be an absolute path/],
    [['publish', src, `${src}:/app:nonroot:nonroot`, '--base', 'scratch', '--output', out], /must be numeric UID:GID/],
    [['publish', `${src}/{oss}:/app`, '--base', 'scratch', '--output', out], /unknown placeholder \{oss\}/],
    [['publish', `${src}:/app`, '--base', 'scratch', '--output', `oci:${join(src, 'image')}`], /the output .* is inside the layer source/],
  ];
  for (const [argv, re] of cases) {
    for (const json of [false, true]) {
      const r = runCliSync(json ? [...argv, '--json'] : argv, env);
      const what = `kocache ${argv.join(' ')}${json ? ' --json' : ''}`;
      assert.equal(r.code, 2, `${what}: ${r.stdout}${r.stderr}`);
      assert.ok(isOneLineError(r), `${what}: ${r.stderr}`);
      assert.match(r.stderr, re, what);
      if (json) assert.match((JSON.parse(r.stdout) as { error: { message: string } }).error.message, re, what);
      assert.equal(existsSync(cache), false, `${what}: no cache folder made`);
    }
  }
  assert.equal(existsSync(join(dir, 'out')), false, 'no publish went ahead');
});

test('warm refuses an option of another kind of target rather than ignoring it (exit 2, one line, nothing made)', () => {
  const dir = tempDir();
  const cache = join(dir, 'cache');
  const env = { KOCACHE: cache };
  const src = validArgs(dir).build![0]!;
  const archive = join(dir, 'image.tar');
  writeFileSync(archive, 'not read');
  const cases: [string[], RegExp][] = [
    // An archive holds its own platforms: --platform linux/arm64 imported the amd64 image and said nothing.
    [['--tarball', archive, '--platform', 'linux/arm64'], /^kocache: --platform is for warming base images \(REF\.\.\.\) or layers \(SRC --import-path\), not archives \(--tarball\)$/],
    [['--tarball', archive, '--import-path', 'example.com/app'], /--import-path is for warming layers/],
    // "Contact no registry" was ignored: a layer or archive with --cache-repo still asked the registry cache.
    [['--tarball', archive, '--offline'], /--offline is for warming base images \(REF\.\.\.\), not archives/],
    [[src, '--import-path', 'example.com/app', '--offline'], /--offline is for warming base images \(REF\.\.\.\), not layers/],
    [['127.0.0.1:1/base:v1', '--build-id', 'x'], /--build-id is for warming layers .*, not base images/],
    [['127.0.0.1:1/base:v1', '--exclude', '*.md'], /--exclude is for warming layers/],
    [['127.0.0.1:1/base:v1', '--owner', '1:1'], /--owner is for warming layers/],
  ];
  for (const [argv, re] of cases) {
    const r = runCliSync(['warm', ...argv], env);
    assert.equal(r.code, 2, `warm ${argv.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr.trimEnd(), re);
  }
  assert.equal(existsSync(cache), false, 'nothing made');
});
