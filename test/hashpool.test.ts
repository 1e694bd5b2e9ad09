import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { hashFileSync } from '../src/layer/filehash.js';
import { fingerprint, fingerprintTree } from '../src/layer/fingerprint.js';
import { hashFiles, prescoutTree, scoutTree, takeEarlyScout, walkShared } from '../src/layer/hashpool.js';
import { StatCache } from '../src/layer/statcache.js';
import { walkSource } from '../src/layer/walk.js';
import { traceSnapshot } from '../src/util/trace.js';
import { tempDir } from './helpers/cli.js';

/** 600 small files in 6 folders, two files larger than the worker's 1 MiB read buffer, one empty, one non-UTF-8 name. */
function tree(): string {
  const src = join(tempDir(), 'src');
  for (let d = 0; d < 6; d++) {
    mkdirSync(join(src, `d${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) writeFileSync(join(src, `d${d}`, `f${f}.js`), randomBytes(1 + ((d * 100 + f) % 700)));
  }
  writeFileSync(join(src, 'big-1.bin'), randomBytes(3 * 1024 * 1024 + 7));
  writeFileSync(join(src, 'big-2.bin'), randomBytes(1024 * 1024));
  writeFileSync(join(src, 'empty'), '');
  writeFileSync(Buffer.concat([Buffer.from(`${src}/raw-`), Buffer.from([0xff, 0xfe])]), 'not utf-8 named');
  return src;
}

const workerBytes = () => traceSnapshot()['file.hash.worker'] ?? 0;

test('files hashed by the worker thread give the sha256 one thread gives, and the same fingerprint', async () => {
  const src = tree();
  const entries = walkSource(src);
  const files = entries.filter((e) => e.type === 'file');
  assert.ok(files.some((f) => f.rawAbs), 'the tree has a name that is not UTF-8');
  const expected = files.map((f) => hashFileSync(f.abs, f.rawAbs));

  const before = workerBytes();
  assert.deepEqual(await hashFiles(files, { mainThread: false }), expected);
  // Every file but the raw-named one (left to the main thread) went through the worker.
  const byWorker = files.filter((f) => !f.rawAbs).reduce((n, f) => n + f.size, 0);
  assert.equal(workerBytes() - before, byWorker);

  // Both threads at once (the order they take files in varies; the answer may not).
  assert.deepEqual(await hashFiles(files), expected);

  const cache = tempDir();
  const alone = fingerprint(entries, new StatCache(join(cache, 'one'), src, Date.now()));
  assert.equal(await fingerprintTree(entries, new StatCache(join(cache, 'two'), src, Date.now())), alone);
});

test('a file gone between the walk and the hashing: the error one thread gives, naming the file', async () => {
  const src = tree();
  const files = walkSource(src).filter((e) => e.type === 'file');
  const gone = files[files.length >> 1]!;
  rmSync(gone.abs);
  const want = (() => {
    try {
      hashFileSync(gone.abs);
    } catch (err) {
      return err as Error;
    }
    assert.fail('the removed file hashed');
  })();
  await assert.rejects(hashFiles(files, { mainThread: false }), (err: Error) => err.message === want.message && err.message.includes(gone.abs));
  await assert.rejects(hashFiles(files), (err: Error) => err.message === want.message);
});

/** 80 folders (past the 64 listed on the main thread before both threads share them), a link, an empty folder, an empty file, a file bigger than a thread's 1 MiB buffer. */
function wideTree(): string {
  const src = join(tempDir(), 'wide');
  for (let d = 0; d < 80; d++) {
    mkdirSync(join(src, 'pkgs', `p${d}`, 'lib'), { recursive: true });
    for (let f = 0; f < 5; f++) writeFileSync(join(src, 'pkgs', `p${d}`, 'lib', `f${f}.js`), randomBytes(1 + ((d * 5 + f) % 300)));
    writeFileSync(join(src, 'pkgs', `p${d}`, 'package.json'), `{"name":"p${d}"}`);
    writeFileSync(join(src, 'pkgs', `p${d}`, 'lib', 'big.bin'), randomBytes(256 * 1024));
  }
  writeFileSync(join(src, 'pkgs', 'p3', 'bigger-than-a-read.bin'), randomBytes(3 * 1024 * 1024 + 5));
  writeFileSync(join(src, 'pkgs', 'p4', 'empty'), '');
  symlinkSync('../pkgs/p1/lib', join(src, 'pkgs', 'p0', 'link'));
  mkdirSync(join(src, 'pkgs', 'empty'));
  writeFileSync(join(src, 'pkgs', 'p-2'), 'sorts between p- and p/ as bytes do');
  return src;
}

test('a tree walked on two threads lists what walkSource lists, and gives the same fingerprint', async () => {
  const src = wideTree();
  // The worker started and waiting (it stays a second), so that it takes folders before this
  // thread has listed them all.
  await hashFiles(walkSource(src).filter((e) => e.type === 'file'), { mainThread: false });
  const before = workerBytes();
  const scout = await scoutTree(src);
  assert.ok(scout, 'two cores here');
  const entries = await scout.walk();
  assert.deepEqual(entries, walkSource(src));
  assert.ok(workerBytes() > before, 'the worker hashed a share of the files');
  const cache = tempDir();
  const alone = fingerprint(entries, new StatCache(join(cache, 'one'), src, Date.now()));
  assert.equal(await fingerprintTree(entries, new StatCache(join(cache, 'two'), src, Date.now()), scout), alone);
});

test('a tree walked on two threads without reading its files lists what walkSource lists', async () => {
  const src = wideTree();
  // The worker started and waiting, as above, so that it lists a share of the folders.
  await hashFiles(walkSource(src).filter((e) => e.type === 'file'), { mainThread: false });
  const shared = () => traceSnapshot()['walk.shared'] ?? 0;
  const before = shared();
  const hashed = workerBytes();
  assert.deepEqual(await walkShared(src), walkSource(src));
  // The two-thread walk answered (not walkSource after a fallback). How many folders the worker
  // took depends on when it wakes, so that is not asserted: a loaded machine may leave it none.
  assert.equal(shared(), before + 1, 'the tree was walked on two threads');
  assert.equal(workerBytes(), hashed, 'no file read');
  // What walkSource alone handles sends the tree back to it.
  writeFileSync(Buffer.concat([Buffer.from(`${src}/pkgs/p9/lib/raw-`), Buffer.from([0xff])]), 'latin-1 named');
  const expected = walkSource(src);
  assert.ok(expected.some((e) => e.rawRel));
  assert.deepEqual(await walkShared(src), expected);
});

test('a tree with a name that is not UTF-8 is walked as walkSource walks it', async () => {
  const src = wideTree();
  writeFileSync(Buffer.concat([Buffer.from(`${src}/pkgs/p7/lib/raw-`), Buffer.from([0xff])]), 'latin-1 named');
  const scout = await scoutTree(src);
  const entries = await scout!.walk();
  const expected = walkSource(src);
  assert.ok(expected.some((e) => e.rawRel));
  assert.deepEqual(entries, expected);
  const cache = tempDir();
  assert.equal(await fingerprintTree(entries, new StatCache(join(cache, 'two'), src, Date.now()), scout), fingerprint(expected, new StatCache(join(cache, 'one'), src, Date.now())));
});

/** The early listing, waited for as a command's other work would (it does not hold the process open itself). */
async function listedEarly(src: string): Promise<void> {
  const alive = setInterval(() => {}, 1000);
  try {
    await prescoutTree(src);
  } finally {
    clearInterval(alive);
  }
}

test('a tree listed and hashed by the worker before its layer is built: the entries walkSource lists, the same fingerprint', async () => {
  const src = wideTree();
  const before = workerBytes();
  const early = () => traceSnapshot()['walk.early'] ?? 0;
  const taken = early();
  await listedEarly(src);
  assert.equal(await takeEarlyScout(join(src, 'pkgs')), undefined, 'another tree is not answered');
  const found = await takeEarlyScout(src);
  assert.ok(found, 'the listing was there');
  assert.equal(early(), taken + 1);
  assert.deepEqual(found.entries, walkSource(src));
  assert.equal(await takeEarlyScout(src), undefined, 'taken once');
  const cache = tempDir();
  const stats = new StatCache(join(cache, 'two'), src, found.startedMs);
  assert.equal(await fingerprintTree(found.entries, stats, found.scout), fingerprint(walkSource(src), new StatCache(join(cache, 'one'), src, Date.now())));
  // The worker began before this thread came: it hashed at least the first file it claimed, the biggest.
  assert.ok(workerBytes() - before >= 3 * 1024 * 1024, 'the worker hashed a share of the files');
});

test('an early listing the worker had not begun yet: the caller walks, and the same worker then hashes with it', async () => {
  const src = wideTree();
  const started = () => traceSnapshot()['file.hash.started'] ?? 0;
  // Not awaited: taken at once, before the worker can have begun (its answer is not waited for).
  void prescoutTree(src);
  assert.equal(await takeEarlyScout(src), undefined, 'not begun');
  const before = started();
  // A turn of the event loop, as the layer builder's walk takes.
  await new Promise((resolve) => setTimeout(resolve, 20));
  const files = walkSource(src).filter((e) => e.type === 'file');
  assert.deepEqual(await hashFiles(files, { mainThread: false }), files.map((f) => hashFileSync(f.abs, f.rawAbs)));
  assert.equal(started(), before, 'no second thread started: the one called off was kept');
});

test('an early listing called off, or of a tree only walkSource lists: the caller walks, and the worker is free again', async () => {
  const src = wideTree();
  await listedEarly(src);
  assert.equal(await takeEarlyScout(src, false), undefined, 'not wanted');
  assert.equal(await takeEarlyScout(src), undefined, 'called off');
  writeFileSync(Buffer.concat([Buffer.from(`${src}/pkgs/p5/raw-`), Buffer.from([0xff])]), 'latin-1 named');
  await listedEarly(src);
  assert.equal(await takeEarlyScout(src), undefined, 'a name that is not UTF-8');
  const files = walkSource(src).filter((e) => e.type === 'file');
  assert.deepEqual(await hashFiles(files, { mainThread: false }), files.map((f) => hashFileSync(f.abs, f.rawAbs)));
});
