import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, describe, test } from 'node:test';
import cacache from 'cacache';
import { CacheStore } from '../src/cache/store.js';
import { stampPath, writeStamp } from '../src/cache/stamp.js';
import { tarKey } from '../src/cache/keys.js';
import { parseDuration, parseSize } from '../src/cli/commands/gc.js';
import { type Digest, digestToIntegrity } from '../src/oci/digest.js';
import { isOneLineError, runCli, tempDir, traceOf } from './helpers/cli.js';
import { makeDockerArchive, standardLayers } from './helpers/archives.js';

interface BuildOut {
  digest: Digest;
  diffid: Digest;
  size: number;
  cached: boolean;
}

interface GcOut {
  removed: { kind: string; what: string; bytes: number; reason: string }[];
  counts: Record<string, number>;
  bytesFreed: number;
  sizeBefore: number;
  sizeAfter: number;
  protectedBytes: number;
  rescued: number;
}

/** Every file under a folder with size and mtime: what "changes nothing" is checked against. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else out.push(`${relative(dir, p)} ${st.size} ${st.mtimeMs}`);
    }
  };
  walk(dir);
  return out.sort();
}

function filesBytes(dir: string): number {
  return listing(dir).reduce((n, l) => n + Number(l.split(' ')[1]), 0);
}

/** Sets a blob's last use to `ageMs` ago (gc orders by it; the real clock is too coarse to test with). */
function age(cache: CacheStore, digest: Digest, ageMs: number): void {
  const t = new Date(Date.now() - ageMs);
  utimesSync(cache.blobPath(digest), t, t);
}

const HOUR = 3600_000;

describe('kocache gc', () => {
  const dirs: string[] = [];
  const newDir = () => {
    const d = tempDir('kocache-gc-');
    dirs.push(d);
    return d;
  };
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  async function build(cacheDir: string, file: string, ip: string): Promise<BuildOut> {
    const r = await runCli(['build', file, '--import-path', ip], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as BuildOut;
  }

  /** A cache holding one layer: a file of `size` random bytes, built under `ip`. */
  async function oneLayer(size: number, ip: string) {
    const cacheDir = newDir();
    const file = join(newDir(), 'layer.bin');
    writeFileSync(file, randomBytes(size));
    return { cacheDir, file, cold: await build(cacheDir, file, ip) };
  }

  /** Five layers of ~100 KB, each built once, last use 5..1 hours ago (e oldest ... a newest). */
  async function fiveLayers() {
    const cacheDir = newDir();
    const src = newDir();
    const cache = new CacheStore(cacheDir);
    const names = ['a', 'b', 'c', 'd', 'e'];
    const built: Record<string, BuildOut & { file: string }> = {};
    for (const [i, n] of names.entries()) {
      const file = join(src, n);
      writeFileSync(file, randomBytes(100_000));
      built[n] = { ...(await build(cacheDir, file, `example.com/${n}`)), file };
      age(cache, built[n]!.digest, (i + 1) * HOUR);
    }
    return { cacheDir, cache, built, names };
  }

  test('--max-size evicts least recently used first and leaves the cache within the size', async () => {
    const { cacheDir, cache, built } = await fiveLayers();
    const before = filesBytes(cacheDir);
    // Room for about two and a half layers: c, d, e (the oldest) must go.
    const max = before - 270_000;
    const r = await runCli(['gc', '--max-size', String(max), '--json'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as GcOut;
    assert.ok(filesBytes(cacheDir) <= max, `cache is ${filesBytes(cacheDir)} bytes, limit ${max}`);
    assert.equal(out.sizeAfter, filesBytes(cacheDir));
    for (const n of ['a', 'b']) assert.equal(await cache.verifyBlob(built[n]!.digest), 'ok', `${n} (recently used) kept`);
    for (const n of ['c', 'd', 'e']) assert.equal(await cache.blobSize(built[n]!.digest), undefined, `${n} (least recently used) evicted`);
    assert.equal(out.counts.blob, 3);
    // The records of evicted layers are gone too; the kept ones still hit.
    const rows = JSON.parse((await runCli(['ls', '--json'], { KOCACHE: cacheDir })).stdout) as { key: string; digest: string }[];
    assert.ok(rows.some((r) => r.digest === built.a!.digest));
    assert.equal(rows.filter((r) => r.digest === built.c!.digest).length, 0);
    assert.equal((await build(cacheDir, built.a!.file, 'example.com/a')).cached, true);
    assert.equal((await build(cacheDir, built.e!.file, 'example.com/e')).cached, false);
  });

  test('a hit counts as a use: the layer built first but used last survives', async () => {
    const { cacheDir, cache, built } = await fiveLayers();
    // e is the oldest; use it now (a hit touches the blob), then put it back just ahead of a.
    assert.equal((await build(cacheDir, built.e!.file, 'example.com/e')).cached, true);
    const mtime = lstatSync(cache.blobPath(built.e!.digest)).mtimeMs;
    assert.ok(Date.now() - mtime < 60_000, 'the hit touched the blob');
    age(cache, built.e!.digest, 0.5 * HOUR);
    const r = await runCli(['gc', '--max-size', String(filesBytes(cacheDir) - 150_000), '--json'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await cache.verifyBlob(built.e!.digest), 'ok');
    assert.equal(await cache.blobSize(built.d!.digest), undefined);
  });

  test('uncompressed tars and base-image blobs go before built layers, however recent', async () => {
    const { cacheDir, cache, built } = await fiveLayers();
    const tar = await cache.writeBlob(Readable(randomBytes(100_000)));
    await cache.putRecord(tarKey(tar.digest), tar, {});
    const img = await cache.writeBlob(Readable(randomBytes(100_000)));
    await cache.putRecord(`img/registry.example/base/blob/${img.digest}`, img, {});
    age(cache, tar.digest, 0.1 * HOUR);
    age(cache, img.digest, 0.1 * HOUR);
    const r = await runCli(['gc', '--max-size', String(filesBytes(cacheDir) - 150_000), '--json'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await cache.blobSize(tar.digest), undefined);
    assert.equal(await cache.blobSize(img.digest), undefined);
    for (const n of ['a', 'b', 'c', 'd', 'e']) assert.equal(await cache.verifyBlob(built[n]!.digest), 'ok', `${n} kept`);
  });

  test('--dry-run reports and changes nothing', async () => {
    const { cacheDir, cache } = await fiveLayers();
    mkdirSync(join(cacheDir, 'tmp'), { recursive: true });
    const leftover = join(cacheDir, 'tmp', 'crashed-writer');
    writeFileSync(leftover, 'half a blob');
    utimesSync(leftover, new Date(Date.now() - HOUR), new Date(Date.now() - HOUR));
    const before = listing(cacheDir);
    const r = await runCli(['gc', '--dry-run', '--max-size', '0', '--max-age', '1m', '--verify', '--json'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as GcOut;
    assert.equal(out.counts.blob, 5);
    assert.equal(out.counts.tmp, 1);
    // Every record points at a blob that would go, so each would go with it.
    const keys = (await cache.listRecords()).map((r) => r.key);
    assert.ok(keys.length >= 10);
    assert.deepEqual(out.removed.filter((x) => x.kind === 'record').map((x) => x.what).sort(), keys);
    assert.ok(out.bytesFreed > 500_000);
    assert.deepEqual(listing(cacheDir), before, 'every file in place, same size, same mtime');
    const text = await runCli(['gc', '--dry-run', '--max-size', '0'], { KOCACHE: cacheDir });
    assert.match(text.stdout, /gc: would remove 5 blobs/);
    assert.deepEqual(listing(cacheDir), before);
  });

  test('removes unreferenced content, old temp files, stale leases; compacts the index', async () => {
    const { cacheDir, cache, built } = await fiveLayers();
    const orphan = await cache.writeBlob(Readable(Buffer.from('nobody points at me')));
    age(cache, orphan.digest, HOUR);
    mkdirSync(join(cacheDir, 'tmp'), { recursive: true });
    mkdirSync(join(cacheDir, 'stat'), { recursive: true });
    const oldTmp = join(cacheDir, 'tmp', 'old');
    const newTmp = join(cacheDir, 'tmp', 'new');
    const oldStatTmp = join(cacheDir, 'stat', 'x.json.abc.tmp');
    for (const p of [oldTmp, newTmp, oldStatTmp]) writeFileSync(p, 'x');
    for (const p of [oldTmp, oldStatTmp]) utimesSync(p, new Date(Date.now() - HOUR), new Date(Date.now() - HOUR));
    // A lease left by a process that no longer exists.
    mkdirSync(join(cacheDir, 'leases'), { recursive: true });
    const stale = join(cacheDir, 'leases', '999999-dead.json');
    writeFileSync(stale, JSON.stringify({ pid: 999_999_999, hostname: hostname(), start: Date.now() - HOUR, command: 'build' }));
    // Duplicates and a tombstone in the index.
    const dupKey = 'tar/sha256:' + '0'.repeat(64);
    await cache.putRecord(dupKey, { digest: built.a!.digest, size: built.a!.size }, { n: 1 });
    await cache.putRecord(dupKey, { digest: built.a!.digest, size: built.a!.size }, { n: 2 });
    await cache.dropRecord(dupKey);

    const r = await runCli(['gc', '--json'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as GcOut;
    assert.equal(await cache.blobSize(orphan.digest), undefined, 'unreferenced blob removed');
    assert.equal(existsSync(oldTmp), false);
    assert.equal(existsSync(oldStatTmp), false);
    assert.equal(existsSync(newTmp), true, 'a young temp file may belong to a running writer');
    assert.equal(out.protectedBytes, 1, 'and counts as protected');
    assert.equal(existsSync(stale), false);
    assert.deepEqual(out.removed.filter((x) => x.kind === 'record').map((x) => x.reason).sort(), ['dead', 'duplicate', 'duplicate']);
    for (const n of ['a', 'b', 'c', 'd', 'e']) assert.equal((await build(cacheDir, built[n]!.file, `example.com/${n}`)).cached, true);
    // Every key now has one line, the removed one none (counted by cacache, keeping every line).
    assert.equal(await indexLines(cacheDir, dupKey), 0);
    for (const { key } of await cache.listRecords()) assert.equal(await indexLines(cacheDir, key), 1, key);
  });

  test('--max-age removes content unused for longer; --verify drops corrupt blobs and their records', async () => {
    const { cacheDir, cache, built } = await fiveLayers();
    mkdirSync(join(cacheDir, 'stat'), { recursive: true });
    const oldStat = join(cacheDir, 'stat', 'old-tree.json');
    const newStat = join(cacheDir, 'stat', 'new-tree.json');
    writeFileSync(oldStat, '{}');
    writeFileSync(newStat, '{}');
    utimesSync(oldStat, new Date(Date.now() - 3 * HOUR), new Date(Date.now() - 3 * HOUR));
    // Verified stamps as hits leave them (written directly: a hit would also touch the blob).
    for (const b of Object.values(built)) writeStamp(cacheDir, b.digest, statSync(cache.blobPath(b.digest), { bigint: true }));
    const r = await runCli(['gc', '--max-age', '150m', '--json'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(oldStat), false, 'stat cache unused for longer than --max-age removed');
    assert.equal(existsSync(newStat), true);
    for (const n of ['a', 'b']) assert.equal(await cache.verifyBlob(built[n]!.digest), 'ok');
    for (const n of ['c', 'd', 'e']) assert.equal(await cache.blobSize(built[n]!.digest), undefined);
    for (const n of ['a', 'b']) assert.equal(existsSync(stampPath(cacheDir, built[n]!.digest)), true, `stamp of kept ${n} kept`);
    for (const n of ['c', 'd', 'e']) assert.equal(existsSync(stampPath(cacheDir, built[n]!.digest)), false, `stamp of evicted ${n} removed`);

    const path = cache.blobPath(built.a!.digest);
    const bytes = readFileSync(path);
    bytes[100] = bytes[100]! ^ 0xff;
    const mtime = lstatSync(path).mtime;
    writeFileSync(path, bytes);
    utimesSync(path, mtime, mtime);
    const v = await runCli(['gc', '--verify', '--json'], { KOCACHE: cacheDir });
    assert.equal(v.code, 0, v.stderr);
    const out = JSON.parse(v.stdout) as GcOut;
    assert.ok(out.removed.some((x) => x.kind === 'blob' && x.reason === 'corrupt'));
    assert.equal(await cache.blobSize(built.a!.digest), undefined);
    assert.equal((await build(cacheDir, built.a!.file, 'example.com/a')).cached, false, 'rebuilt');
  });

  test('--verify drops a diffid record its layer does not unpack to; the next build records the layer again', async () => {
    const { cacheDir, file, cold } = await oneLayer(50_000, 'example.com/diffid');
    const cache = new CacheStore(cacheDir);
    // What a record taken on trust would leave: the build id and a diffid record naming another diffid.
    const wrong = `sha256:${'e'.repeat(64)}` as Digest;
    const records = await cache.listRecords();
    const byId = records.find((r) => (r.metadata as { diffid?: string }).diffid === cold.diffid && !r.key.includes('/diffid/'))!;
    const byDiff = records.find((r) => r.key.includes(`/diffid/${cold.diffid}/`))!;
    assert.ok(byId && byDiff, records.map((r) => r.key).join('\n'));
    const blob = { digest: cold.digest, size: cold.size };
    await cache.putRecord(byId.key, blob, { ...(byId.metadata as object), diffid: wrong });
    const poisoned = byDiff.key.replace(cold.diffid, wrong);
    await cache.putRecord(poisoned, blob, { ...(byDiff.metadata as object), diffid: wrong });
    assert.equal((await build(cacheDir, file, 'example.com/diffid')).diffid, wrong, 'served as a hit before gc');

    const dry = JSON.parse((await runCli(['gc', '--verify', '--dry-run', '--json'], { KOCACHE: cacheDir })).stdout) as GcOut;
    assert.deepEqual(dry.removed.filter((x) => x.reason === 'corrupt').map((x) => x.what), [poisoned]);
    const r = await runCli(['gc', '--verify', '--json'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as GcOut;
    assert.deepEqual(out.removed.filter((x) => x.reason === 'corrupt').map((x) => [x.kind, x.what]), [['record', poisoned]]);
    assert.ok((await cache.listRecords()).some((r) => r.key === byDiff.key), 'the right diffid record stays');
    const again = await build(cacheDir, file, 'example.com/diffid');
    assert.deepEqual([again.digest, again.diffid], [cold.digest, cold.diffid]);
  });

  test('an index line with a well-formed checksum but a key or integrity that is not text is no record: gc goes on and drops it', async () => {
    const { cacheDir, file, cold } = await oneLayer(10_000, 'example.com/badline');
    const buckets = readdirSync(join(cacheDir, 'index-v5'), { recursive: true }).map(String).filter((p) => statSync(join(cacheDir, 'index-v5', p)).isFile());
    for (const [i, line] of [{ key: 1, integrity: 5 }, { key: 'x', integrity: 7 }, { key: ['a'], integrity: null }].entries()) {
      const json = JSON.stringify({ ...line, time: 0 });
      writeFileSync(join(cacheDir, 'index-v5', buckets[i % buckets.length]!), `\n${createHash('sha1').update(json).digest('hex')}\t${json}`, { flag: 'a' });
    }
    for (const args of [['gc', '--dry-run'], ['gc'], ['gc', '--verify']]) {
      const r = await runCli([...args, '--json'], { KOCACHE: cacheDir });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(!(JSON.parse(r.stdout) as GcOut).removed.some((x) => x.kind === 'blob'), 'no blob removed');
    }
    const all = buckets.map((b) => readFileSync(join(cacheDir, 'index-v5', b), 'utf8')).join('');
    assert.doesNotMatch(all, /"integrity":(5|7|null)/, 'the bad lines are gone');
    const again = await build(cacheDir, file, 'example.com/badline');
    assert.deepEqual([again.digest, again.cached], [cold.digest, true]);
  });

  test('a line with no whole size keeps no blob, for du and gc alike', async () => {
    const { cacheDir, cold: built } = await oneLayer(10_000, 'example.com/badsize');
    const cache = new CacheStore(cacheDir);
    const records = await cache.listRecords();
    for (const r of records) await cache.dropRecord(r.key);
    // The blob's only line, with a size kocache never writes.
    await cacache.index.insert(cacheDir, 'tree/odd', digestToIntegrity(built.digest as Digest), { size: -1 });
    age(cache, built.digest as Digest, HOUR);
    const du = JSON.parse((await runCli(['du', '--json'], { KOCACHE: cacheDir })).stdout) as { unreferenced: { blobs: number } };
    assert.equal(du.unreferenced.blobs, 1, 'du: unreferenced');
    const r = await runCli(['gc', '--json'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as GcOut).removed.filter((x) => x.kind === 'blob').map((x) => x.reason), ['unreferenced'], 'gc: removed as du said');
  });

  test('an imported archive keeps every blob its record names (config, layers), and du counts them in use: the next import of it reads nothing', async () => {
    const cacheDir = newDir();
    const archive = makeDockerArchive(newDir(), standardLayers(), { gzip: true });
    const cache = new CacheStore(cacheDir);
    const first = await runCli(['warm', '--tarball', archive.path, '--json'], { KOCACHE: cacheDir });
    assert.equal(first.code, 0, first.stderr);
    const du = async () => {
      const d = await runCli(['du', '--json'], { KOCACHE: cacheDir });
      assert.equal(d.code, 0, d.stderr);
      return JSON.parse(d.stdout) as { unreferenced: { blobs: number }; kinds: Record<string, { blobs: number }> };
    };
    const before = await du();
    const blobs = cache.contentFiles().filter((f) => f.digest).length;
    assert.equal(before.unreferenced.blobs, 0, 'du: the config and layers the record names are in use');
    assert.equal(Object.values(before.kinds).reduce((n, k) => n + k.blobs, 0), blobs, 'du: every blob counted under a kind');
    for (const { digest } of cache.contentFiles()) if (digest) age(cache, digest, HOUR);
    const r = await runCli(['gc', '--json'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as GcOut).removed.filter((x) => x.kind === 'blob'), [], 'no blob of the image removed');
    const after = await du();
    assert.deepEqual([after.kinds, after.unreferenced], [before.kinds, before.unreferenced], 'du the same after gc (but the compacted index)');
    const again = await runCli(['warm', '--tarball', archive.path, '--json'], { KOCACHE: cacheDir, KOCACHE_TRACE: '1' });
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /importing it again/);
    assert.equal(traceOf(again.stderr)['inflate.layer'] ?? 0, 0, 'nothing inflated');
  });

  test('a gc lock or lease whose process has exited but is not yet collected (a zombie) holds nothing', async () => {
    const { cacheDir, cache, built } = await fiveLayers();
    // The backgrounded sleep exits at once; its parent, now `sleep 30`, never collects it.
    const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const pid = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()))));
      const stat = () => readFileSync(`/proc/${pid}/stat`, 'utf8');
      for (let i = 0; i < 1000 && stat().slice(stat().lastIndexOf(')') + 2)[0] !== 'Z'; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(stat().slice(stat().lastIndexOf(')') + 2)[0], 'Z', 'a zombie within 10 s');
      const pidStart = stat().slice(stat().lastIndexOf(')') + 2).split(' ')[19];
      const holder = JSON.stringify({ pid, hostname: hostname(), start: Date.now() - 3.5 * HOUR, command: 'gc', pidStart });
      writeFileSync(join(cacheDir, 'gc.lock'), holder);
      mkdirSync(join(cacheDir, 'leases'), { recursive: true });
      writeFileSync(join(cacheDir, 'leases', `${pid}-zombie.json`), holder.replace('"gc"', '"build"'));
      const r = await runCli(['gc', '--max-size', '0', '--json'], { KOCACHE: cacheDir });
      assert.equal(r.code, 0, r.stderr);
      for (const n of ['a', 'b', 'c', 'd', 'e']) assert.equal(await cache.blobSize(built[n]!.digest), undefined, `${n}: no lease protects it`);
    } finally {
      parent.kill();
    }
  });

  test('content newer than a live lease is never removed; a live gc lock refuses a second gc', async () => {
    const { cacheDir, cache, built } = await fiveLayers();
    const holder = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      mkdirSync(join(cacheDir, 'leases'), { recursive: true });
      // A running build that started 3.5 hours ago: it may be using b..a (used since), not c..e.
      writeFileSync(join(cacheDir, 'leases', `${holder.pid}-live.json`),
        JSON.stringify({ pid: holder.pid, hostname: hostname(), start: Date.now() - 3.5 * HOUR, command: 'build' }));
      const r = await runCli(['gc', '--max-size', '0', '--json'], { KOCACHE: cacheDir });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /above --max-size .* in use by running kocache commands/);
      for (const n of ['a', 'b', 'c']) assert.equal(await cache.verifyBlob(built[n]!.digest), 'ok', `${n} protected by the lease`);
      for (const n of ['d', 'e']) assert.equal(await cache.blobSize(built[n]!.digest), undefined);

      writeFileSync(join(cacheDir, 'gc.lock'), JSON.stringify({ pid: holder.pid, hostname: hostname(), start: Date.now(), command: 'gc' }));
      const locked = await runCli(['gc'], { KOCACHE: cacheDir });
      assert.ok(isOneLineError(locked), locked.stderr);
      assert.match(locked.stderr, /another kocache gc is running on this cache \(pid \d+/);
    } finally {
      holder.kill();
    }
    // A lock whose pid is gone is taken over.
    writeFileSync(join(cacheDir, 'gc.lock'), JSON.stringify({ pid: 999_999_999, hostname: hostname(), start: Date.now(), command: 'gc' }));
    const r = await runCli(['gc'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(join(cacheDir, 'gc.lock')), false);
  });

  test('gc running while builds run: every build succeeds and the final blob verifies', async () => {
    const cacheDir = newDir();
    const src = newDir();
    const files = ['x', 'y'].map((n) => {
      const f = join(src, n);
      writeFileSync(f, randomBytes(300_000));
      return f;
    });
    let stop = false;
    const failures: string[] = [];
    let rebuilt = 0;
    let evicted = 0;
    // x is built back to back by two loops; y every few seconds, so gc evicts y between its
    // builds while x's builds hold leases: both the eviction path and the protection are exercised.
    const builds = async (file: string, ip: string, count: number, pauseMs: number) => {
      for (let n = 0; n < count; n++) {
        const r = await runCli(['build', file, '--import-path', ip], { KOCACHE: cacheDir });
        if (r.code !== 0) failures.push(`build ${ip}: ${r.stderr}`);
        else if (n > 0 && !(JSON.parse(r.stdout) as BuildOut).cached) rebuilt++;
        if (pauseMs) await new Promise((res) => setTimeout(res, pauseMs));
      }
    };
    const gcs = async () => {
      let n = 0;
      while (!stop) {
        // Two gcs race for the lock as well as with the builds: one may be refused (the lock is held,
        // or still being written), never broken.
        const r = await runCli(['gc', '--max-size', '0', '--max-age', '1s', '--json'], { KOCACHE: cacheDir });
        if (r.code === 0) evicted += (JSON.parse(r.stdout) as GcOut).counts.blob ?? 0;
        else if (!/another kocache gc is (running|starting)/.test(r.stderr)) failures.push(`gc: ${r.stderr}`);
        // Above the size with nothing protected is said as such, never as "0 B is in use".
        if (/ 0 B is in use/.test(r.stderr)) failures.push(`gc: ${r.stderr}`);
        n++;
      }
      return n;
    };
    const g = [gcs(), gcs()];
    await Promise.all([
      builds(files[0]!, 'example.com/x', 8, 0),
      builds(files[0]!, 'example.com/x', 8, 0),
      builds(files[1]!, 'example.com/y', 4, 4_000),
    ]);
    stop = true;
    const gcRuns = await Promise.all(g);
    assert.deepEqual(failures, []);
    assert.ok(gcRuns.every((n) => n >= 1));
    assert.ok(evicted > 0 && rebuilt > 0, `gc evicted ${evicted} blobs and ${rebuilt} builds had to rebuild: the race was real`);
    const cache = new CacheStore(cacheDir);
    for (const [i, f] of files.entries()) {
      const out = await build(cacheDir, f, `example.com/${i === 0 ? 'x' : 'y'}`);
      assert.equal(await cache.verifyBlob(out.digest, out.size), 'ok');
    }
  });

  test('bad input is one line and a non-zero exit', async () => {
    const cacheDir = newDir();
    for (const args of [['--max-size', 'lots'], ['--max-age', 'soon'], ['--max-size', '-5'], ['--max-age', '30']]) {
      const r = await runCli(['gc', ...args], { KOCACHE: cacheDir });
      assert.ok(isOneLineError(r), `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.code, 2);
    }
  });

  test('a misspelt option stops gc before it removes anything', async () => {
    // yargs ran a command's handler even after its unknown-option check had failed: a typo for
    // --dry-run collected garbage, then reported the typo.
    const { cacheDir } = await oneLayer(50_000, 'example.com/typo');
    const files = () => (readdirSync(cacheDir, { recursive: true }) as string[]).filter((f) => !f.startsWith('leases')).sort();
    const before = files();
    assert.ok((await new CacheStore(cacheDir).listRecords()).length > 0, 'the build stored records');
    const r = await runCli(['gc', '--max-size', '0', '--dry-rn'], { KOCACHE: cacheDir });
    assert.ok(isOneLineError(r), r.stderr);
    assert.equal(r.code, 2);
    // Named once, as typed (yargs adds its camelCase form, dryRn).
    assert.match(r.stderr, /^kocache: Unknown argument: dry-rn\n$/);
    assert.equal(r.stdout, '');
    assert.deepEqual(files(), before);
  });

  test('sizes and durations', () => {
    assert.equal(parseSize('500MB'), 500_000_000);
    assert.equal(parseSize('2GiB'), 2 * 1024 ** 3);
    assert.equal(parseSize('1.5k'), 1500);
    assert.equal(parseSize('1048576'), 1048576);
    assert.equal(parseSize('10 kib'), 10240);
    assert.equal(parseDuration('30d'), 30 * 24 * HOUR);
    assert.equal(parseDuration('12h'), 12 * HOUR);
    assert.equal(parseDuration('90m'), 90 * 60_000);
    assert.equal(parseDuration('1h30m'), 90 * 60_000);
    assert.throws(() => parseSize('5 parsecs'), /invalid --max-size/);
    assert.throws(() => parseDuration('1x'), /invalid --max-age/);
  });
});

/** How many lines the index holds for `key` (0 when none): cacache's compact, told to keep them all, lists them. */
async function indexLines(cacheDir: string, key: string): Promise<number> {
  let n = 0;
  try {
    await cacache.index.compact(cacheDir, key, () => false, { validateEntry: (e) => (n += e.key === key ? 1 : 0) >= 0 });
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return 0;
    throw err;
  }
  return n;
}

function Readable(bytes: Buffer): AsyncIterable<Uint8Array> {
  return (async function* () {
    yield bytes;
  })();
}
