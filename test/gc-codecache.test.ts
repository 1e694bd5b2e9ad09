import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { bundleStamp } from '../src/cache/codecaches.js';
import { CLI_JS, runCli, tempDir } from './helpers/cli.js';

interface GcOut {
  removed: { kind: string; what: string; bytes: number; reason: string }[];
  counts: Record<string, number>;
  bytesFreed: number;
}

const HOUR = 3600;

function put(path: string, bytes: number, ageSeconds: number): void {
  writeFileSync(path, Buffer.alloc(bytes, 7));
  const t = Date.now() / 1000 - ageSeconds;
  utimesSync(path, t, t);
}

/** A code cache folder as several kocache versions and Node lines leave it. */
function fill(cacheDir: string): { dir: string; stamp: string } {
  const stamp = bundleStamp(join(dirname(CLI_JS), 'cli.cjs'));
  assert.ok(stamp, 'the tests run the bundled CLI');
  const dir = join(cacheDir, 'node-compile-cache');
  mkdirSync(join(dir, 'v22.12.0-x64-5c7fa0f3-0'), { recursive: true });
  put(join(dir, `cli.cjs.v8-12.4.254.21-node.33-${stamp}.hit.codecache`), 1000, HOUR);
  put(join(dir, `cli.cjs.v8-13.6.233.10-node.24-${stamp}.first.codecache`), 1100, HOUR);
  put(join(dir, 'cli.cjs.v8-12.4.254.21-node.33-999-1700000000000.hit.codecache'), 1200, HOUR);
  put(join(dir, 'cli.cjs.v8-12.4.254.21-node.33-999-1700000000000.first.codecache'), 1300, 0);
  put(join(dir, `cli.cjs.v8-12.4.254.21-node.33-${stamp}.hit.codecache.4242.tmp`), 1400, HOUR);
  put(join(dir, 'v22.12.0-x64-5c7fa0f3-0', 'index'), 1500, HOUR);
  utimesSync(join(dir, 'v22.12.0-x64-5c7fa0f3-0'), Date.now() / 1000 - HOUR, Date.now() / 1000 - HOUR);
  put(join(dir, 'notes.txt'), 10, HOUR);
  return { dir, stamp };
}

describe('gc and the code cache folder', () => {
  test('stale code caches go, the running bundle\'s and young ones stay; a dry run removes nothing', async () => {
    const cacheDir = tempDir();
    const { dir, stamp } = fill(cacheDir);
    const before = readdirSync(dir).sort();

    const dry = await runCli(['gc', '--dry-run', '--json'], { KOCACHE: cacheDir });
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(readdirSync(dir).sort(), before);
    const planned = (JSON.parse(dry.stdout) as GcOut).removed.filter((r) => r.kind === 'code');

    const r = await runCli(['gc', '--json'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as GcOut;
    const code = out.removed.filter((x) => x.kind === 'code');
    assert.deepEqual(code.map((x) => `${x.what} ${x.reason} ${x.bytes}`).sort(), [
      'node-compile-cache/cli.cjs.v8-12.4.254.21-node.33-999-1700000000000.hit.codecache stale 1200',
      `node-compile-cache/cli.cjs.v8-12.4.254.21-node.33-${stamp}.hit.codecache.4242.tmp leftover 1400`,
      'node-compile-cache/v22.12.0-x64-5c7fa0f3-0 stale 1500',
    ].sort());
    assert.deepEqual(planned, out.removed.filter((x) => x.kind === 'code'));
    assert.equal(out.counts['code'], 3);
    assert.ok(out.bytesFreed >= 4100);
    assert.deepEqual(readdirSync(dir).sort(), [
      `cli.cjs.v8-12.4.254.21-node.33-${stamp}.hit.codecache`,
      'cli.cjs.v8-12.4.254.21-node.33-999-1700000000000.first.codecache',
      `cli.cjs.v8-13.6.233.10-node.24-${stamp}.first.codecache`,
      'notes.txt',
    ].sort());
    const du = await runCli(['du', '--json'], { KOCACHE: cacheDir });
    assert.equal((JSON.parse(du.stdout) as { codeCache: { bytes: number } }).codeCache.bytes, 1000 + 1100 + 1300 + 10);
    const text = await runCli(['gc'], { KOCACHE: cacheDir });
    assert.match(text.stdout + text.stderr, /0 code caches/);
  });

  test('a missing or read-only code cache folder is no error', async () => {
    const missing = tempDir();
    const r1 = await runCli(['gc', '--json'], { KOCACHE: missing });
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal((JSON.parse(r1.stdout) as GcOut).counts['code'], 0);

    const cacheDir = tempDir();
    const { dir } = fill(cacheDir);
    chmodSync(dir, 0o555);
    try {
      const r2 = await runCli(['gc', '--json'], { KOCACHE: cacheDir });
      assert.equal(r2.code, 0, r2.stderr);
    } finally {
      chmodSync(dir, 0o755);
    }
    assert.ok(existsSync(dir));
  });
});
