import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CacheStore } from '../src/cache/store.js';
import { SCOUT_MIN_ENTRIES, buildLayer } from '../src/layer/build.js';
import { fingerprint } from '../src/layer/fingerprint.js';
import { statFilesWritten } from '../src/layer/hashpool.js';
import { StatCache } from '../src/layer/statcache.js';
import { walkSource } from '../src/layer/walk.js';
import { parseLayerSource } from '../src/layer/source.js';
import type { LayerTier } from '../src/layer/tier.js';
import { hasAtLeastEntries } from '../src/layer/treesize.js';
import { sha256Digest } from '../src/oci/digest.js';
import { MediaType } from '../src/oci/mediatypes.js';
import { traceSnapshot } from '../src/util/trace.js';
import { tempDir } from './helpers/cli.js';

/** `dirs` folders of `files` small files each: dirs * (files + 1) + 1 entries. */
function tree(dirs: number, files: number): string {
  const src = join(tempDir(), 'src');
  for (let d = 0; d < dirs; d++) {
    mkdirSync(join(src, `d${d}`), { recursive: true });
    for (let f = 0; f < files; f++) writeFileSync(join(src, `d${d}`, `f${f}`), `${d}/${f}`);
  }
  return src;
}

const counter = (name: string) => traceSnapshot()[name] ?? 0;

// A registry cache that answers every lookup: the build only fingerprints the tree.
const answer = { descriptor: { mediaType: MediaType.OciLayerGzip, digest: sha256Digest('layer'), size: 5 }, diffid: sha256Digest('tar') };
const tier: LayerTier = { check: false, find: async () => answer, offer: () => {} };

async function freshRunner(src: string, dir = join(tempDir(), 'cache')): Promise<void> {
  const cache = new CacheStore(dir);
  const r = await buildLayer(parseLayerSource(`${src}:/app`), { cache, importPath: 'example.com/scout', platform: { os: 'linux', architecture: 'amd64' }, tier });
  assert.equal(r.remote, true);
}

test('hasAtLeastEntries counts every entry below the root, folders included', () => {
  const src = tree(3, 10); // 3 folders + 30 files
  assert.equal(hasAtLeastEntries(src, 33), true);
  assert.equal(hasAtLeastEntries(src, 34), false);
  assert.equal(hasAtLeastEntries(join(src, 'd0', 'f0'), 1), false, 'a file is no tree');
});

test('a fresh runner hashes a tree of few entries and bytes on one thread, and walks one of many ahead on a second', async () => {
  const scouts = counter('file.scout');
  const worker = counter('file.hash.worker');
  await freshRunner(tree(6, 100)); // 607 entries: the worker's start-up would not be repaid
  assert.equal(counter('file.scout'), scouts);
  assert.equal(counter('file.hash.worker'), worker, 'no file hashed by the worker');

  await freshRunner(tree(Math.ceil(SCOUT_MIN_ENTRIES / 100), 100));
  assert.equal(counter('file.scout'), scouts + 1, 'the worker walked the big tree ahead');
});

test('a build lists a tree of many entries on two threads (its files only lstat-ed), a small one on one', async () => {
  const shared = () => counter('walk.shared');
  const build = async (src: string, cache: CacheStore) => {
    const r = await buildLayer(parseLayerSource(`${src}:/app`), { cache, importPath: 'example.com/walk', platform: { os: 'linux', architecture: 'amd64' } });
    return r.descriptor.digest;
  };
  const big = tree(Math.ceil(SCOUT_MIN_ENTRIES / 100), 100);
  const cache = new CacheStore(join(tempDir(), 'cache'));
  const cold = await build(big, cache);
  const before = shared();
  writeFileSync(join(big, 'd3', 'f7'), 'edited');
  const edited = await build(big, cache);
  assert.equal(shared(), before + 1, 'the edit listed the tree on two threads');
  assert.notEqual(edited, cold);
  assert.equal(await build(big, new CacheStore(join(tempDir(), 'cache'))), edited, 'the layer a cold build gives');

  const small = tree(6, 100);
  const smallCache = new CacheStore(join(tempDir(), 'cache'));
  await build(small, smallCache);
  writeFileSync(join(small, 'd3', 'f7'), 'edited');
  const count = shared();
  await build(small, smallCache);
  assert.equal(shared(), count, 'a small tree listed on one thread');
});

test("a fresh runner's worker writes the stat cache's files, the bytes this thread writes; a failed write is done here", async () => {
  const src = tree(Math.ceil(SCOUT_MIN_ENTRIES / 100), 100);
  // Past the racy window (a file changed within 2 s of a walk is never stamped; ctime cannot be set back).
  await new Promise((r) => setTimeout(r, 2100));
  const statFiles = (dir: string) => readdirSync(join(dir, 'stat')).sort().map((f) => readFileSync(join(dir, 'stat', f)));
  const onWorker = counter('stat.written.worker');
  const ahead = counter('stat.written.ahead');
  const fresh = join(tempDir(), 'cache');
  await freshRunner(src, fresh);
  await statFilesWritten();
  assert.equal(counter('stat.written.worker'), onWorker + 1, 'written by the worker');
  assert.equal(counter('stat.written.ahead'), ahead + 1, 'the stamps handed over before the fingerprint, the listing after it');

  const here = join(tempDir(), 'cache');
  const stats = new StatCache(here, src, Date.now());
  const entries = walkSource(src);
  stats.save({ entries, fingerprint: fingerprint(entries, stats) });
  const expected = statFiles(here);
  assert.equal(expected.length, 2, 'the stamps and the listing');
  assert.deepEqual(statFiles(fresh), expected);

  // A file where the stat folder belongs: the worker cannot write, this thread replaces it.
  const blocked = join(tempDir(), 'cache');
  mkdirSync(blocked, { recursive: true });
  writeFileSync(join(blocked, 'stat'), 'not a folder');
  await freshRunner(src, blocked);
  await statFilesWritten();
  assert.equal(counter('stat.written.worker'), onWorker + 1, 'not by the worker');
  assert.deepEqual(statFiles(blocked), expected);
});
