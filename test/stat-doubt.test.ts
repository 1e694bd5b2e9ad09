import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { type BuildOut, runCli, tempDir, traceOf } from './helpers/cli.js';

/** Past the stat cache's racy window (2 s), so stamps taken after this are trusted. */
const pastRacyWindow = () => new Promise((r) => setTimeout(r, 2_100));

/**
 * Gives `rel`'s stamp in the tree's stamps file the file's stat as it is now, keeping the hash it
 * had: a stat cache fooled (src/layer/statcache.ts: a 64-byte header, 5 doubles per stamp, the
 * sha256s as hex, the paths each ended by NUL).
 */
function foolStamp(cacheDir: string, root: string, rel: string): void {
  const stat = join(cacheDir, 'stat');
  const [name] = readdirSync(stat).filter((n) => n.endsWith('.stamps'));
  const path = join(stat, name!);
  const buf = readFileSync(path);
  const count = Number(/^kocache stamps \d+ (\d+)/.exec(buf.toString('latin1', 0, 64))![1]);
  const namesAt = 64 + count * 5 * 8 + count * 64;
  const paths = buf.toString('utf8', namesAt, buf.length - 1).split('\0');
  const i = paths.indexOf(rel);
  assert.ok(i >= 0, `${rel} is stamped`);
  const st = lstatSync(join(root, rel));
  const numbers = new Float64Array([st.size, st.mtimeMs, st.ctimeMs, st.ino, st.dev]);
  Buffer.from(numbers.buffer).copy(buf, 64 + i * 5 * 8);
  writeFileSync(path, buf);
}

test('an edit build that finds the stat cache wrong builds the right layer, records it under no fingerprint of those hashes, and drops the stamps', async () => {
  const dir = tempDir();
  const src = join(dir, 'src');
  mkdirSync(join(src, 'lib'), { recursive: true });
  // Big files left unread by an edit (copied by name; the worker reads them and checks the copies).
  for (const n of [1, 2]) writeFileSync(join(src, `big${n}.bin`), randomBytes(18 << 20));
  for (let i = 0; i < 8; i++) writeFileSync(join(src, 'lib', `f${i}.txt`), randomBytes(40_000));
  const cacheDir = join(dir, 'cache');
  const build = async (cache: string, trace = false) => {
    const r = await runCli(['build', `${src}:/app`, '--import-path', 'example.com/doubt'], { KOCACHE: cache, ...(trace ? { KOCACHE_TRACE: '1' } : {}) });
    assert.equal(r.code, 0, r.stderr);
    return { out: JSON.parse(r.stdout) as BuildOut, trace: trace ? traceOf(r.stderr) : {}, stderr: r.stderr };
  };
  const treeKeys = async () => {
    const r = await runCli(['ls', '--json'], { KOCACHE: cacheDir });
    return (JSON.parse(r.stdout) as { key: string }[]).filter((e) => e.key.startsWith('tree/')).length;
  };
  await pastRacyWindow();
  await build(cacheDir);
  assert.equal(await treeKeys(), 1);

  // big1.bin rewritten at its size and its stamp made to vouch for the old bytes; one small file
  // edited for real, so the fingerprint misses and the edit is built.
  const big = readFileSync(join(src, 'big1.bin'));
  big.write('THE STAT CACHE DOES NOT KNOW', 5 << 20);
  writeFileSync(join(src, 'big1.bin'), big);
  appendFileSync(join(src, 'lib', 'f3.txt'), 'one more line\n');
  await pastRacyWindow();
  foolStamp(cacheDir, src, 'big1.bin');

  const edit = await build(cacheDir, true);
  const truth = await build(join(dir, 'cold'));
  assert.equal(edit.out.digest, truth.out.digest, 'the layer is made of the bytes read');
  assert.equal(edit.out.diffid, truth.out.diffid);
  assert.equal(edit.trace['stitch.unread.again'], 1, 'the copies by name were found wrong');
  assert.equal(edit.trace['stat.doubted'], 1);
  assert.match(edit.stderr, /not what the stat cache said/);
  assert.equal(await treeKeys(), 1, 'no record under the fingerprint the wrong hash made');
  assert.deepEqual(readdirSync(join(cacheDir, 'stat')).filter((n) => !n.startsWith('.')), [], 'the stamps and listing dropped');

  // Every file hashed again: the true fingerprint, recorded once built, then a hit.
  const next = await build(cacheDir, true);
  assert.equal(next.out.digest, truth.out.digest);
  assert.equal(next.trace['stat.doubted'] ?? 0, 0);
  const hit = await build(cacheDir);
  assert.deepEqual([hit.out.digest, hit.out.cached], [truth.out.digest, true]);
});
