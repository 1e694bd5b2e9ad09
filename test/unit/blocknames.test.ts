import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CacheStore } from '../../src/cache/store.js';
import { packToCache } from '../../src/layer/pack.js';
import { walkSource, type SourceEntry } from '../../src/layer/walk.js';
import { traceSnapshot } from '../../src/util/trace.js';
import { tempDir } from '../helpers/cli.js';

const gzip = { level: 5, jobs: 2 };
const tarOpts = { dest: '/app', mtime: 0 };

/** Words from a fixed generator: compressible, and no two files alike. */
function text(seed: number, size: number): Buffer {
  let x = seed * 2654435761 + 1;
  const words: string[] = [];
  let n = 0;
  while (n < size) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = `w${(x >>> 8) % 5000} `;
    words.push(w);
    n += w.length;
  }
  return Buffer.from(words.join('')).subarray(0, size);
}

/**
 * The entries with their stats as on disk now: these tests rewrite a file at the same size and
 * keep its old hash, a stat cache fooled into a lie, not a file changed since the walk (which the
 * tar refuses before any block is named: test/layer.test.ts).
 */
function restat(entries: readonly SourceEntry[]): SourceEntry[] {
  return entries.map((e) => {
    if (e.type !== 'file') return e;
    const st = lstatSync(e.abs);
    return { ...e, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
  });
}

async function pack(cacheDir: string, walked: SourceEntry[], known?: (i: number) => string | undefined) {
  const entries = restat(walked);
  const before = traceSnapshot();
  const r = await packToCache(entries, tarOpts, gzip, new CacheStore(cacheDir), { lineage: 'test/names', known });
  const after = traceSnapshot();
  const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
  return {
    ...r,
    named: delta('gzip.named'),
    reused: delta('gzip.reused'),
    deflated: delta('gzip.in'),
    stale: delta('stitch.stale'),
    tar: delta('tar.out'),
    unread: delta('tar.unread'),
    again: delta('stitch.unread.again'),
    filled: delta('tar.filled'),
    blobOnWorker: delta('hash.blob'),
  };
}

test('blocks are copied by name without hashing them; a name whose file hash is stale is caught by the input CRC-32', async () => {
  const dir = tempDir();
  const src = join(dir, 'src');
  mkdirSync(join(src, 'lib'), { recursive: true });
  for (let i = 0; i < 80; i++) writeFileSync(join(src, 'lib', `f${i}.txt`), text(i, 40_000 + i * 300));
  writeFileSync(join(src, 'big.bin'), text(999, 2_500_000));
  const entries = walkSource(src);
  const sha = (e: SourceEntry) => createHash('sha256').update(readFileSync(e.abs)).digest('hex');
  const hashes = entries.map((e) => (e.type === 'file' ? sha(e) : undefined));
  const cacheDir = join(dir, 'cache');

  const first = await pack(cacheDir, entries, (i) => hashes[i]);
  assert.equal(first.reused, 0);
  const again = await pack(cacheDir, entries, (i) => hashes[i]);
  assert.equal(again.blob.digest, first.blob.digest);
  assert.equal(again.deflated, 0);
  assert.equal(again.named, again.tar, 'every block found by its name');

  // The same size, other bytes: a stat cache fooled into the old hash would name the old block.
  const victim = entries.findIndex((e) => e.rel === 'lib/f40.txt');
  writeFileSync(entries[victim]!.abs, text(4040, entries[victim]!.size));
  const stale = await pack(cacheDir, entries, (i) => hashes[i]);
  const cold = await pack(join(dir, 'cold'), entries);
  assert.equal(cold.reused, 0);
  assert.equal(stale.blob.digest, cold.blob.digest);
  assert.equal(stale.diffid, cold.diffid);
  assert.equal(stale.stale, 1, 'the block whose name lied was not copied');
  assert.equal(stale.doubted, true, 'the stat cache\'s word is doubted');
  assert.ok(!again.doubted && !first.doubted);
  assert.ok(stale.deflated > 0 && stale.deflated < stale.tar / 2, `deflated ${stale.deflated} of ${stale.tar}`);
  assert.ok(stale.named < stale.tar);

  // Without the hashes nothing has a name: blocks are found by key, the same bytes.
  const unnamed = await pack(cacheDir, entries);
  assert.equal(unnamed.blob.digest, cold.blob.digest);
  assert.equal(unnamed.named, 0);
  assert.equal(unnamed.deflated, 0);
});

test('a block found by name is not copied when a file in its dictionary changed behind the stat cache', async () => {
  // The 32 KiB before a block is its dictionary: a stale hash for a file there names the old
  // dictionary, and the block's own bytes (and their CRC-32) are unchanged, so only the
  // dictionary's CRC-32 in the map can tell. Files 37, 60 and 78 of this tree end a block.
  const dir = tempDir();
  const src = join(dir, 'src');
  mkdirSync(join(src, 'lib'), { recursive: true });
  for (let i = 0; i < 80; i++) writeFileSync(join(src, 'lib', `f${i}.txt`), text(i, 40_000 + i * 300));
  const entries = walkSource(src);
  const hashes = entries.map((e) => (e.type === 'file' ? createHash('sha256').update(readFileSync(e.abs)).digest('hex') : undefined));
  let dictionaryCaught = 0;
  for (const v of [37, 60, 78]) {
    const victim = entries.find((e) => e.rel === `lib/f${v}.txt`)!;
    const original = readFileSync(victim.abs);
    const cacheDir = join(dir, `cache-${v}`);
    await pack(cacheDir, entries, (i) => hashes[i]);
    writeFileSync(victim.abs, text(10_000 + v, victim.size));
    const stale = await pack(cacheDir, entries, (i) => hashes[i]);
    const cold = await pack(join(dir, `cold-${v}`), entries);
    assert.equal(stale.blob.digest, cold.blob.digest, `lying about f${v}`);
    assert.equal(stale.diffid, cold.diffid);
    // The victim's block, and the block after it whose dictionary the victim reaches into.
    if (stale.stale >= 2) dictionaryCaught++;
    writeFileSync(victim.abs, original);
  }
  assert.ok(dictionaryCaught > 0, 'some victim reached into the next block\'s dictionary');
});

test('a big layer leaves known files unread for blocks copied by name; a name that lied is caught by the worker and the layer built again', async () => {
  // Over 32 MiB of file data: the diffid is hashed on the worker thread, which then reads the
  // files itself (pack.ts `lazy`).
  const dir = tempDir();
  const src = join(dir, 'src');
  mkdirSync(join(src, 'lib'), { recursive: true });
  for (let i = 0; i < 60; i++) writeFileSync(join(src, 'lib', `f${i}.txt`), text(i, 30_000 + i * 300));
  for (let i = 0; i < 4; i++) {
    const piece = text(500 + i, 1 << 20);
    const big = Buffer.alloc(9 << 20);
    for (let at = 0; at < big.length; at += piece.length) piece.copy(big, at);
    big.writeUInt32BE(i, 4096);
    writeFileSync(join(src, `big${i}.bin`), big);
  }
  const sha = (e: SourceEntry) => createHash('sha256').update(readFileSync(e.abs)).digest('hex');
  let entries = walkSource(src);
  let hashes = entries.map((e) => (e.type === 'file' ? sha(e) : undefined));
  const cacheDir = join(dir, 'cache');
  const cold = async (name: string) => {
    const c = await pack(join(dir, name), entries);
    assert.equal(c.unread, 0);
    return c;
  };

  const first = await pack(cacheDir, entries, (i) => hashes[i]);
  assert.equal(first.unread, 0, 'no names to copy by yet: every file read');
  // A cache whose builds know no file hashes: its edit copies blocks by key, reading every file.
  const keyCache = join(dir, 'cache-keys');
  assert.equal((await pack(keyCache, entries)).blobOnWorker, 0, 'a cold build hashes its blob on the main thread');
  const again = await pack(cacheDir, entries, (i) => hashes[i]);
  assert.equal(again.blob.digest, first.blob.digest);
  assert.equal(again.diffid, first.diffid);
  assert.equal(again.deflated, 0);
  assert.ok(again.unread >= 36 << 20, `unread ${again.unread}`);
  assert.equal(again.again, 0);
  assert.ok(!again.doubted);

  // A real edit: the edited file's hash is known too (the fingerprint took it), so it is left
  // unread as well, and its block is filled only because no name matches it.
  const edited = join(src, 'lib', 'f30.txt');
  writeFileSync(edited, Buffer.concat([readFileSync(edited), Buffer.from('one more line\n')]));
  entries = walkSource(src);
  hashes = entries.map((e) => (e.type === 'file' ? sha(e) : undefined));
  const edit = await pack(cacheDir, entries, (i) => hashes[i]);
  const editCold = await cold('cold-edit');
  assert.equal(edit.blob.digest, editCold.blob.digest);
  assert.equal(edit.blobOnWorker, 0, 'a lazy edit hashes its blob on the main thread (the worker reads the files)');
  // An edit that reads every file has its blob hashed on the worker, every byte of it, and stored
  // under that digest.
  const byKey = await pack(keyCache, entries);
  assert.equal(byKey.blob.digest, editCold.blob.digest);
  assert.ok(byKey.reused > 30 << 20, `reused ${byKey.reused}`);
  assert.equal(byKey.blobOnWorker, byKey.blob.size);
  assert.equal(await new CacheStore(keyCache).checkBlob(byKey.blob.digest), 'ok');
  assert.equal(edit.diffid, editCold.diffid);
  assert.ok(edit.deflated > 0 && edit.deflated < 4 << 20, `deflated ${edit.deflated}`);
  assert.equal(edit.again, 0);
  assert.ok(!edit.doubted && !editCold.doubted);

  // An edit inside a big file left unread: its piece, and the next one's dictionary, are filled
  // from the file (holes), the rest copied.
  const bigEdited = join(src, 'big1.bin');
  const bytes = readFileSync(bigEdited);
  bytes.write('an edit', 4 << 20);
  writeFileSync(bigEdited, bytes);
  hashes = entries.map((e) => (e.type === 'file' ? sha(e) : undefined));
  const inBig = await pack(cacheDir, entries, (i) => hashes[i]);
  const inBigCold = await cold('cold-big');
  assert.equal(inBig.blob.digest, inBigCold.blob.digest);
  assert.equal(inBig.diffid, inBigCold.diffid);
  assert.ok(inBig.deflated > 0 && inBig.deflated <= 2 << 20, `deflated ${inBig.deflated}`);
  assert.ok(inBig.unread >= 36 << 20);
  assert.ok(inBig.filled > 1 << 20, `filled ${inBig.filled}`);
  assert.equal(inBig.again, 0);

  // Lies: the same size, other bytes, the old hash (a fooled stat cache): in a small file, in the
  // middle of a big one, and in a file just before a block (only its dictionary's CRC-32 differs).
  for (const [rel, at] of [['lib/f41.txt', 100], ['big2.bin', 5 << 20], ['lib/f59.txt', 29_000]] as const) {
    const victim = entries.find((e) => e.rel === rel)!;
    const original = readFileSync(victim.abs);
    const changed = Buffer.from(original);
    changed.write('LIED', at);
    writeFileSync(victim.abs, changed);
    const lied = await pack(cacheDir, entries, (i) => hashes[i]);
    const truth = await cold(`cold-${rel.replace('/', '-')}`);
    assert.equal(lied.blob.digest, truth.blob.digest, `lying about ${rel}`);
    assert.equal(lied.diffid, truth.diffid);
    assert.equal(lied.again, 1, `the lazy build of ${rel} was done again`);
    assert.equal(lied.doubted, true, `lying about ${rel}: doubted`);
    writeFileSync(victim.abs, original);
    const back = await pack(cacheDir, entries, (i) => hashes[i]);
    assert.equal(back.blob.digest, inBigCold.blob.digest);
    assert.equal(back.again, 0);
    assert.ok(!back.doubted);
  }
});
