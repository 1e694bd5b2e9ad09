import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, runCli, tempDir } from './helpers/cli.js';
import { type FaultProxy, startFaultProxy } from './helpers/fault-proxy.js';
import { startRegistry } from './helpers/registry.js';
import { someBytes } from './helpers/archives.js';

// Progress as a person at a terminal sees it: the CLI run under script(1), which gives it a
// pseudo-terminal for stdout and stderr (both then arrive here as one stream).

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * `kocache ARGS` on a terminal, with `CI` as given (undefined: not set); what the terminal showed.
 * Run asynchronously: a registry or proxy of the test's own process must go on answering.
 */
function onTerminal(args: string[], ci: string | undefined, cache: string): Promise<{ code: number | null; shown: string }> {
  const env: Record<string, string | undefined> = { ...process.env, KOCACHE: cache };
  delete env.CI;
  delete env.KOCACHE_PROGRESS;
  if (ci !== undefined) env.CI = ci;
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qec', [CLI, ...args].map(quote).join(' '), '/dev/null'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let shown = '';
    child.stdout.on('data', (b: Buffer) => (shown += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, shown }));
  });
}

test('on a terminal, build draws its progress and clears it before the result; in CI only the result is shown', async () => {
  const dir = tempDir();
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'data'), someBytes(4 << 20, 'tty'));
  const build = (n: number, ci: string | undefined) => onTerminal(['build', `${src}:/app`, '--import-path', `example.com/tty${n}`, '--build-id', `id-${n}`], ci, join(dir, `cache-${n}`));
  const json = /\{"mediaType":"application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip".*"cached":false,"remote":false\}\r?\n$/;
  // Not in CI, or CI=false / CI=0 as some set it to say so: progress, then a clean line for the result.
  for (const [n, ci] of [[1, undefined], [2, 'false'], [3, '0']] as const) {
    const { code, shown } = await build(n, ci);
    assert.equal(code, 0, shown);
    assert.match(shown, /\r\x1b\[Kbuilding layer [\d.]+ s/, `CI=${String(ci)}: progress drawn: ${JSON.stringify(shown)}`);
    assert.match(shown, /building layer: done \([\d.]+ s\)\r?\n/, 'the finished phase leaves a line');
    assert.match(shown, json);
    // The result starts on a line of its own, with nothing of the progress line left on it.
    const last = shown.trimEnd().split('\n').at(-1)!;
    assert.match(last, /^\{"mediaType"/, JSON.stringify(last));
  }
  for (const [n, ci] of [[4, 'true'], [5, '1']] as const) {
    const { code, shown } = await build(n, ci);
    assert.equal(code, 0, shown);
    assert.doesNotMatch(shown, /\x1b\[K|building layer/, `CI=${ci}: nothing but the result`);
    assert.match(shown, /^\{"mediaType".*\}\r?\n$/);
  }
});

test('on a terminal, an error after progress was drawn is said on a line of its own', async () => {
  const dir = tempDir();
  const reg = await startRegistry();
  let proxy: FaultProxy | undefined;
  try {
    const env = { KOCACHE: join(dir, 'cache') };
    for (const name of ['one', 'two']) {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'data'), someBytes(1 << 20, name));
    }
    const pub = await runCli(['publish', `${join(dir, 'one')}:/one`, `${join(dir, 'two')}:/two`, '--base', 'scratch', '--repo', `${reg.host}/tty/two:v1`, '--json'], env);
    assert.equal(pub.code, 0, pub.stderr);
    const inspected = await runCli(['inspect', `${reg.host}/tty/two:v1`, '--json'], env);
    const second = (JSON.parse(inspected.stdout) as { images: { layers: { digest: string }[] }[] }).images[0]!.layers[1]!.digest;
    // The second layer is not there: warm draws "1/2 layers" for the first, then fails.
    proxy = await startFaultProxy(reg.port, [{ method: 'GET', path: new RegExp(second.slice('sha256:'.length)), times: 100, status: 404 }]);
    const { code, shown } = await onTerminal(['warm', `${proxy.host}/tty/two:v1`, '-j', '1'], undefined, join(dir, 'fresh'));
    assert.equal(code, 1, shown);
    assert.match(shown, /warming .*: 1\/2 layers/, JSON.stringify(shown));
    // The error line starts the line (after the progress line's clearing), it is not glued to it.
    assert.match(shown, /(^|\r\x1b\[K|\n)kocache: [^\n]*: not found in the registry\r?\n$/, JSON.stringify(shown));
    assert.doesNotMatch(shown, /fetchedkocache/, JSON.stringify(shown));
  } finally {
    await proxy?.stop();
    await reg.stop();
  }
});

test('on a terminal, warm --tarball says its import is done, or was cached, on a line of its own', async () => {
  const dir = tempDir();
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'data'), someBytes(1 << 20, 'warm-tty'));
  const archive = join(dir, 'image.tar');
  const made = await runCli(['publish', `${src}:/app`, '--base', 'scratch', '--repo', 'example.com/tty:v1', '--output', `docker-archive:${archive}`], { KOCACHE: join(dir, 'maker') });
  assert.equal(made.code, 0, made.stderr);
  const cache = join(dir, 'cache');
  for (const said of ['done', 'cached']) {
    const { code, shown } = await onTerminal(['warm', '--tarball', archive], undefined, cache);
    assert.equal(code, 0, shown);
    assert.match(shown, new RegExp(`(^|\\r\\x1b\\[K|\\n)importing [^\\n]*image\\.tar: ${said} \\([\\d.]+ s\\)\\r?\\n`), JSON.stringify(shown));
  }
});
