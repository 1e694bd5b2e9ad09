import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type CliResult, runCli, tempDir } from './helpers/cli.js';
import { someBytes } from './helpers/archives.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

// Every command's --json output against the shape docs/cli-json.md shows for it, and every
// command's text output ending in its one summary line.

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The JSON block of each section of docs/cli-json.md, by command ('error' for the errors section). */
function documentedShapes(): Map<string, unknown> {
  const doc = readFileSync(join(root, 'docs', 'cli-json.md'), 'utf8');
  const out = new Map<string, unknown>();
  for (const section of doc.split(/^## /m).slice(1)) {
    const title = section.slice(0, section.indexOf('\n'));
    const block = /```json\n([\s\S]*?)```/.exec(section);
    assert.ok(block, `docs/cli-json.md: "${title}" has a json block`);
    // `kocache gc --cache-repo REPO --json` -> "gc --cache-repo": placeholders (upper case) dropped.
    const name = title.startsWith('Errors') ? 'error' : /`kocache ([^`]*?) --json`/.exec(title)?.[1]?.split(' ').filter((w) => w !== w.toUpperCase() || w.startsWith('-')).join(' ');
    assert.ok(name, `docs/cli-json.md: cannot name the section "${title}"`);
    out.set(name, JSON.parse(block[1]!));
  }
  return out;
}

/**
 * `actual` has the documented shape: the same keys in the same order, all the way down. A
 * documented `{}` is a map of any keys, an object with a "…" key any content, `null` any value;
 * an array's entries are each compared with the documented entry of the same `kind` (else the first).
 */
function assertShape(doc: unknown, actual: unknown, at: string): void {
  if (doc === null || actual === null) return;
  if (Array.isArray(doc)) {
    assert.ok(Array.isArray(actual), `${at}: want an array, got ${JSON.stringify(actual)}`);
    actual.forEach((a, i) => {
      const kind = (a as { kind?: unknown } | null)?.kind;
      const like = doc.find((d) => (d as { kind?: unknown } | null)?.kind === kind) ?? doc[0];
      assertShape(like, a, `${at}[${i}]`);
    });
    return;
  }
  if (typeof doc === 'object') {
    assert.ok(typeof actual === 'object' && !Array.isArray(actual), `${at}: want an object, got ${JSON.stringify(actual)}`);
    const keys = Object.keys(doc);
    if (keys.length === 0 || keys.includes('…')) return;
    assert.deepEqual(Object.keys(actual), keys, `${at}: keys`);
    for (const k of keys) assertShape((doc as Record<string, unknown>)[k], (actual as Record<string, unknown>)[k], `${at}.${k}`);
    return;
  }
  assert.equal(typeof actual, typeof doc, `${at}: ${JSON.stringify(actual)}`);
}

let work: string;
let env: Record<string, string>;
let reg: RunningRegistry;
let shapes: Map<string, unknown>;

before(async () => {
  shapes = documentedShapes();
  work = tempDir('kocache-cli-json-');
  env = { KOCACHE: join(work, 'cache') };
  mkdirSync(join(work, 'out'));
  writeFileSync(join(work, 'out', 'hello'), '#!/bin/sh\necho hello\n');
  chmodSync(join(work, 'out', 'hello'), 0o755);
  writeFileSync(join(work, 'out', 'data'), someBytes(64 << 10, 'cli-json'));
  reg = await startRegistry();
});
after(async () => {
  await reg?.stop();
  rmSync(work, { recursive: true, force: true });
});

async function run(args: string[]): Promise<CliResult> {
  const r = await runCli(args, env, { cwd: work });
  assert.equal(r.code, 0, `kocache ${args.join(' ')}: ${r.stderr}`);
  return r;
}

/** `kocache ARGS --json`, checked against the documented shape of `command`. */
async function json(command: string, args: string[]): Promise<Record<string, unknown>> {
  const r = await run([...args, '--json']);
  assert.equal(r.stdout.trimEnd().split('\n').length, 1, `one line on stdout: ${r.stdout}`);
  const v = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.ok(shapes.has(command), `docs/cli-json.md documents ${command}`);
  assertShape(shapes.get(command), v, command);
  return v;
}

/** The text output's last line (stdout, or stderr where the command says its summary there). */
function lastLine(s: string): string {
  return s.trimEnd().split('\n').at(-1)!;
}

/** In CI (as these tests run) publish and push say exactly one line on stderr: the summary. */
function oneStderrLine(r: CliResult, pattern: RegExp): void {
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  assert.match(r.stderr.trimEnd(), pattern);
}

describe('every --json output has its documented shape, and every text output ends in one summary line', () => {
  test('the shape checker fails on a missing, extra or reordered key (it can tell)', () => {
    const doc = { a: 1, b: [{ kind: 'x', c: 's' }, { kind: 'y', d: 2 }], m: {} };
    assertShape(doc, { a: 2, b: [{ kind: 'y', d: 3 }, { kind: 'x', c: 't' }], m: { any: 1 } }, 't');
    assert.throws(() => assertShape(doc, { a: 2, b: [], m: {}, z: 1 }, 't'));
    assert.throws(() => assertShape(doc, { b: [], a: 2, m: {} }, 't'));
    assert.throws(() => assertShape(doc, { a: 2, b: [{ kind: 'y', c: 's' }], m: {} }, 't'));
    assert.throws(() => assertShape(doc, { a: '2', b: [], m: {} }, 't'));
  });

  test('errors: one shape for every command, a documented code, the exit code the command has without --json', async () => {
    const r = await runCli(['publish', './out:/app', '--json'], env, { cwd: work });
    assert.equal(r.code, 2);
    assertShape(shapes.get('error'), JSON.parse(r.stdout), 'error');
    assert.equal(JSON.parse(r.stdout).error.code, 'usage');
    // The codes the doc lists are the library's, all of them (src/errors.ts, type ErrorCode).
    const union = /export type ErrorCode =([^;]*);/.exec(readFileSync(join(root, 'src', 'errors.ts'), 'utf8'))![1]!;
    const codes = [...union.matchAll(/'([a-z-]+)'/g)].map((m) => m[1]!);
    const listed = /`code` says what went wrong[^:]*:([^(]*)\(/.exec(readFileSync(join(root, 'docs', 'cli-json.md'), 'utf8'))?.[1];
    assert.ok(listed, 'docs/cli-json.md lists the error codes');
    assert.deepEqual([...listed.matchAll(/`([a-z-]+)`/g)].map((m) => m[1]!), codes);
    const afile = join(work, 'afile');
    writeFileSync(afile, 'x');
    const failing: [number, string[], Record<string, string>?][] = [
      [1, ['build', './missing:/app', '--import-path', 'example.com/json']],
      [1, ['publish', './missing:/app', '--base', 'scratch', '--output', 'oci:./never']],
      [1, ['push', './missing.tar', `${reg.host}/json/app:v1`]],
      [1, ['warm', '--tarball', './missing.tar']],
      [2, ['warm', 'BAD REF']],
      [1, ['inspect', './missing.tar']],
      [1, ['ls'], { KOCACHE: afile }],
      [1, ['du'], { KOCACHE: afile }],
      [1, ['gc'], { KOCACHE: afile }],
      [2, ['completion']],
    ];
    for (const [code, args, extra] of failing) {
      const what = `kocache ${args.join(' ')}`;
      const text = await runCli(args, { ...env, ...extra }, { cwd: work });
      const j = await runCli([...args, '--json'], { ...env, ...extra }, { cwd: work });
      assert.equal(j.code, code, `${what} --json: ${j.stderr}`);
      if (args[0] !== 'completion') assert.equal(text.code, code, `${what}: ${text.stderr}`);
      assert.equal(j.stdout.trimEnd().split('\n').length, 1, `${what}: one line on stdout: ${j.stdout}`);
      const v = JSON.parse(j.stdout) as { error: { code: string; message: string } };
      assertShape(shapes.get('error'), v, what);
      assert.ok(codes.includes(v.error.code), `${what}: documented code ${v.error.code}`);
      assert.equal(j.stderr.trimEnd(), `kocache: ${v.error.message}`, `${what}: the same one line on stderr`);
    }
  });

  test('an error is JSON whenever --json is on as the parser reads it (--json=true; not after --no-json)', async () => {
    const args = ['build', './missing:/app', '--import-path', 'example.com/json'];
    for (const [flags, json] of [[['--json=true'], true], [['--no-json', '--json'], true], [['--json', '--no-json'], false], [['--json=false'], false]] as const) {
      const r = await runCli([...args, ...flags], env, { cwd: work });
      assert.equal(r.code, 1, `${flags.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr, 'kocache: cannot read layer source ./missing: no such file or directory\n');
      if (json) assertShape(shapes.get('error'), JSON.parse(r.stdout), flags.join(' '));
      else assert.equal(r.stdout, '', flags.join(' '));
    }
  });

  test('build, ls, du, gc', async () => {
    for (const cached of [false, true]) {
      const b = await json('build', ['build', './out:/app', '--import-path', 'example.com/json']);
      assert.equal(b.cached, cached);
    }
    await json('ls', ['ls']);
    assert.match(lastLine((await run(['ls'])).stdout), /^\d+ records, 1 blob, [\d.]+ (B|KiB)$/);
    await json('du', ['du']);
    assert.match(lastLine((await run(['du'])).stdout), /: [\d.]+ (B|KiB|MiB) in all$/);
    // A crashed writer's temp file, old enough for gc to take: `removed` has an entry to check.
    mkdirSync(join(work, 'cache', 'tmp'), { recursive: true });
    for (const name of ['left-1', 'left-2']) {
      writeFileSync(join(work, 'cache', 'tmp', name), 'x');
      utimesSync(join(work, 'cache', 'tmp', name), new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000));
    }
    const gc = await json('gc', ['gc', '--dry-run']);
    assert.ok((gc.removed as unknown[]).length >= 2, JSON.stringify(gc));
    assert.match(lastLine((await run(['gc'])).stdout), /^gc: removed \d+ blobs?, .* freed; cache .* -> /);
  });

  test('publish (registry, oci:, docker-archive:), push, inspect: one shape each whatever the output', async () => {
    const ref = `${reg.host}/json/app:v1`;
    const common = ['./out:/app', '--base', 'scratch', '--entrypoint', '/app/hello'];
    const pushed = await json('publish', ['publish', ...common, '--repo', ref, '--tag', 'latest', '--cache-repo', `${reg.host}/json/cache`]);
    assert.deepEqual(pushed.tags, ['v1', 'latest']);
    await json('publish', ['publish', ...common, '--output', `oci:${join(work, 'layout')}:v1`]);
    await json('publish', ['publish', ...common, '--output', `docker-archive:${join(work, 'app.tar')}`]);
    const text = await run(['publish', ...common, '--repo', ref]);
    oneStderrLine(text, /^pushed .*json\/app:v1: layers 0 built, 1 cached; blobs 0 uploaded, 0 mounted, 2 already present$/);
    assert.equal(text.stdout, `${reg.host}/json/app@${String(pushed.digest)}\n`);
    const layoutText = await run(['publish', ...common, '--output', `oci:${join(work, 'layout')}:v2`]);
    oneStderrLine(layoutText, /^wrote OCI layout .*layout \(tag v2\): layers 0 built, 1 cached; blobs \d+ written, \d+ already there$/);

    const one = await json('push', ['push', join(work, 'app.tar'), `${reg.host}/json/pushed:v1`]);
    assert.equal((one.images as unknown[]).length, 1);
    const two = await json('push', ['push', join(work, 'app.tar'), `${reg.host}/json/pushed:v2`, '--also', `oci:${join(work, 'layout')}:v1=${reg.host}/json/other:v1`]);
    assert.equal((two.images as unknown[]).length, 2);
    const pushText = await run(['push', join(work, 'app.tar'), `${reg.host}/json/pushed:v3`]);
    oneStderrLine(pushText, /^pushed .*json\/pushed:v3: blobs 0 uploaded \(0 B\), \d+ mounted, \d+ already present$/);

    for (const image of [ref, `oci:${join(work, 'layout')}:v1`, `oci:${join(work, 'layout')}`, join(work, 'app.tar')]) {
      await json('inspect', ['inspect', image]);
      assert.match(lastLine((await run(['inspect', image])).stdout), /^\d+ images?, \d+ layers?, [\d.]+ (B|KiB|MiB) of layers$/);
    }

    const gc = await json('gc --cache-repo', ['gc', '--cache-repo', `${reg.host}/json/cache`, '--max-age', '1m', '--dry-run']);
    assert.ok((gc.records as number) >= 1, JSON.stringify(gc));
    assert.match(lastLine((await run(['gc', '--cache-repo', `${reg.host}/json/cache`, '--max-age', '1m', '--dry-run'])).stdout), /^gc: .*json\/cache: would delete \d+ of \d+ records older than 1m$/);
  });

  test('warm: one shape for base images, layers and archives, one target or several', async () => {
    const base = `${reg.host}/json/base:v1`;
    await run(['publish', './out:/app', '--base', 'scratch', '--repo', base, '--platform', 'linux/amd64,linux/arm64']);
    const fresh = { KOCACHE: join(work, 'warm-cache') };
    const warm = async (args: string[]) => {
      const r = await runCli([...args, '--json'], fresh, { cwd: work });
      assert.equal(r.code, 0, r.stderr);
      const v = JSON.parse(r.stdout) as { warmed: { kind: string; cached: boolean }[]; total: number; cached: number };
      assertShape(shapes.get('warm'), v, 'warm');
      assert.equal(v.total, v.warmed.length);
      assert.equal(v.cached, v.warmed.filter((w) => w.cached).length);
      return v;
    };
    const b = await warm(['warm', base]);
    assert.deepEqual(b.warmed.map((w) => [w.kind, w.cached]), [['base', false]]);
    const l = await warm(['warm', './out:/app', './out/hello:/bin/hello', '--import-path', 'example.com/json']);
    assert.deepEqual(l.warmed.map((w) => w.kind), ['layer', 'layer']);
    const a = await warm(['warm', '--tarball', join(work, 'app.tar')]);
    assert.deepEqual(a.warmed.map((w) => [w.kind, w.cached]), [['archive', false]]);
    const again = await warm(['warm', '--tarball', join(work, 'app.tar'), join(work, 'app.tar')]);
    assert.deepEqual([again.total, again.cached], [2, 2]);

    const one = await runCli(['warm', base], fresh, { cwd: work });
    assert.deepEqual(one.stdout.trimEnd().split('\n').length, 1, one.stdout);
    assert.match(one.stdout, /: linux\/amd64, linux\/arm64; 1 layer, 0 fetched \(0 B\), 1 already cached\n$/);
    const several = await runCli(['warm', './out:/app', './out/hello:/bin/hello', '--import-path', 'example.com/json'], fresh, { cwd: work });
    assert.equal(lastLine(several.stdout), 'warmed 2 layers: 0 built, 2 already cached');
  });
});
