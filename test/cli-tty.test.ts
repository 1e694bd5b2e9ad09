import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, tempDir } from './helpers/cli.js';
import { someBytes } from './helpers/archives.js';

// Progress as a person at a terminal sees it: the CLI run under script(1), which gives it a
// pseudo-terminal for stdout and stderr (both then arrive here as one stream).

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** `kocache ARGS` on a terminal, with `CI` as given (undefined: not set); what the terminal showed. */
function onTerminal(args: string[], ci: string | undefined, cache: string): { code: number | null; shown: string } {
  const env: Record<string, string | undefined> = { ...process.env, KOCACHE: cache };
  delete env.CI;
  delete env.KOCACHE_PROGRESS;
  if (ci !== undefined) env.CI = ci;
  const r = spawnSync('script', ['-qec', [CLI, ...args].map(quote).join(' '), '/dev/null'], { env, encoding: 'utf8' });
  assert.equal(r.error, undefined, 'script(1) (util-linux) runs');
  return { code: r.status, shown: r.stdout };
}

test('on a terminal, build draws its progress and clears it before the result; in CI only the result is shown', () => {
  const dir = tempDir();
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'data'), someBytes(4 << 20, 'tty'));
  const build = (n: number, ci: string | undefined) => onTerminal(['build', `${src}:/app`, '--import-path', `example.com/tty${n}`, '--build-id', `id-${n}`], ci, join(dir, `cache-${n}`));
  const json = /\{"mediaType":"application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip".*"cached":false,"remote":false\}\r?\n$/;
  // Not in CI, or CI=false / CI=0 as some set it to say so: progress, then a clean line for the result.
  for (const [n, ci] of [[1, undefined], [2, 'false'], [3, '0']] as const) {
    const { code, shown } = build(n, ci);
    assert.equal(code, 0, shown);
    assert.match(shown, /\r\x1b\[Kbuilding layer [\d.]+ s/, `CI=${String(ci)}: progress drawn: ${JSON.stringify(shown)}`);
    assert.match(shown, /building layer: done \([\d.]+ s\)\r?\n/, 'the finished phase leaves a line');
    assert.match(shown, json);
    // The result starts on a line of its own, with nothing of the progress line left on it.
    const last = shown.trimEnd().split('\n').at(-1)!;
    assert.match(last, /^\{"mediaType"/, JSON.stringify(last));
  }
  for (const [n, ci] of [[4, 'true'], [5, '1']] as const) {
    const { code, shown } = build(n, ci);
    assert.equal(code, 0, shown);
    assert.doesNotMatch(shown, /\x1b\[K|building layer/, `CI=${ci}: nothing but the result`);
    assert.match(shown, /^\{"mediaType".*\}\r?\n$/);
  }
});
