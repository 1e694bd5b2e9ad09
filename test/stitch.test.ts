import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { blockMapKey } from '../src/cache/keys.js';
import { CacheStore } from '../src/cache/store.js';
import { crc32Combine } from '../src/compress/crc32.js';
import { TarCuts } from '../src/compress/cuts.js';
import { gzipStream } from '../src/compress/gzip.js';
import { BlockNames } from '../src/compress/blocknames.js';
import { tarBlocks } from '../src/layer/tar.js';
import { walkSource } from '../src/layer/walk.js';
import { buildLayer } from '../src/layer/build.js';
import { LayerCompressor } from '../src/tarball/compressor.js';
import { parseLayerSource } from '../src/layer/source.js';
import { parsePlatform } from '../src/oci/platform.js';
import { traceSnapshot } from '../src/util/trace.js';
import { runCli, tempDir, traceOf } from './helpers/cli.js';

const platform = parsePlatform('linux/amd64');
const MiB = 1 << 20;

/** A seeded generator (mulberry32), so a failing run can be repeated with STITCH_SEED. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = 'function return layer digest cache error null context import const struct module exports require value index buffer stream block offset length'.split(' ');

/** Source-like text: words, numbers and line breaks. */
function text(rand: () => number, n: number): Buffer {
  const parts: string[] = [];
  let len = 0;
  while (len < n) {
    const w = rand() < 0.15 ? String(Math.floor(rand() * 100000)) : WORDS[Math.floor(rand() * WORDS.length)]!;
    parts.push(w, rand() < 0.12 ? '\n' : ' ');
    len += w.length + 1;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}

function noise(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((rand() * 4294967296) >>> 0, Math.min(i, n - 4));
  return b;
}

/** Several thousand files in nested folders, some binary, two larger than a block. */
function makeTree(root: string, rand: () => number): string {
  const src = join(root, 'tree');
  for (let i = 0; i < 3200; i++) {
    const dir = join(src, `pkg${i % 160}`, `lib${i % 5}`);
    mkdirSync(dir, { recursive: true });
    const size = [120, 900, 3000, 7000, 12000][Math.floor(rand() * 5)]!;
    writeFileSync(join(dir, `f${i}.js`), i % 97 === 0 ? noise(rand, size) : text(rand, size));
  }
  mkdirSync(join(src, 'big'));
  writeFileSync(join(src, 'big', 'a.bin'), text(rand, 3 * MiB + 12345));
  writeFileSync(join(src, 'big', 'b.dat'), Buffer.concat([text(rand, 2 * MiB), noise(rand, MiB)]));
  return src;
}

/** `kocache build SRC:/app` into `cache`: the layer's digest and the KOCACHE_TRACE counters. */
async function cliBuild(src: string, importPath: string, cache: string): Promise<{ digest: string; trace: Record<string, number> }> {
  const r = await runCli(['build', `${src}:/app`, '--import-path', importPath], { KOCACHE: cache, KOCACHE_TRACE: '1' });
  assert.equal(r.code, 0, r.stderr);
  return { digest: (JSON.parse(r.stdout) as { digest: string }).digest, trace: traceOf(r.stderr) };
}

function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p));
    else out.push(p);
  }
  return out.sort();
}

async function build(cacheDir: string, src: string, warn?: (m: string) => void) {
  const cache = new CacheStore(cacheDir);
  const before = traceSnapshot();
  const layer = await buildLayer(parseLayerSource(`${src}:/app`), { cache, importPath: 'example.com/stitch', platform, warn });
  const after = traceSnapshot();
  const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
  return { cache, layer, deflated: delta('gzip.in'), reused: delta('gzip.reused'), tar: delta('tar.out'), corrupt: delta('stitch.corrupt'), missing: delta('stitch.missing') };
}

/** The blob through GNU gzip: its sha256 must be the diffid. */
function gunzipDigest(path: string): string {
  const tar = execFileSync('gzip', ['-dc', path], { maxBuffer: 1 << 30 });
  return `sha256:${createHash('sha256').update(tar).digest('hex')}`;
}

// A fixed seed by default, so CI runs the same edits on every Node line; STITCH_SEED=random (or a
// number) draws others.
const seed = process.env.STITCH_SEED === 'random' ? Date.now() % 100000 : Number(process.env.STITCH_SEED ?? 29985);

test(`randomised edits: every incremental layer is byte-identical to a cold build, and only blocks near the edit are deflated (seed ${seed})`, async () => {
  const rand = rng(seed);
  const dir = tempDir();
  const src = makeTree(dir, rand);
  const cacheDir = join(dir, 'cache');
  const first = await build(cacheDir, src);
  assert.equal(first.reused, 0);
  assert.equal(first.deflated, first.tar);
  const pick = () => {
    const all = files(src);
    return all[Math.floor(rand() * all.length)]!;
  };
  const small = () => {
    for (;;) {
      const p = pick();
      if (!p.includes('/big/')) return p;
    }
  };
  let n = 0;
  const edits: Record<string, () => void> = {
    change: () => {
      const p = small();
      writeFileSync(p, text(rand, statSync(p).size));
    },
    append: () => writeFileSync(small(), text(rand, 1 + Math.floor(rand() * 3000)), { flag: 'a' }),
    insert: () => {
      const p = small();
      const b = readFileSync(p);
      const at = Math.floor(rand() * b.length);
      writeFileSync(p, Buffer.concat([b.subarray(0, at), text(rand, 1 + Math.floor(rand() * 500)), b.subarray(at)]));
    },
    delete: () => unlinkSync(small()),
    rename: () => {
      const p = small();
      renameSync(p, join(src, `pkg${Math.floor(rand() * 160)}`, `renamed${n}.js`));
    },
    'one byte in a big file': () => {
      const p = join(src, 'big', rand() < 0.5 ? 'a.bin' : 'b.dat');
      const b = readFileSync(p);
      const at = Math.floor(rand() * b.length);
      b[at] = (b[at]! + 1) & 0xff;
      writeFileSync(p, b);
    },
    chmod: () => {
      const p = small();
      chmodSync(p, statSync(p).mode & 0o100 ? 0o644 : 0o755);
    },
    'add a directory': () => {
      const d = join(src, `pkg${Math.floor(rand() * 160)}`, `new${n}`);
      mkdirSync(d);
      for (let i = 0; i < 6; i++) writeFileSync(join(d, `n${i}.js`), text(rand, 2000));
    },
    'remove a directory': () => {
      // A package that still has a directory: earlier edits may have emptied the one drawn.
      for (let tries = 0; tries < 1000; tries++) {
        const parent = join(src, `pkg${Math.floor(rand() * 160)}`);
        const dirs = readdirSync(parent, { withFileTypes: true }).filter((e) => e.isDirectory());
        const lib = dirs.find((e) => e.name.startsWith('lib')) ?? dirs[0];
        if (!lib) continue;
        rmSync(join(parent, lib.name), { recursive: true });
        return;
      }
      throw new Error(`no directory left to remove (seed ${seed})`);
    },
  };
  const kinds = Object.keys(edits);
  // Each kind once in random order, then random kinds.
  const order = [...kinds.sort(() => rand() - 0.5), ...Array.from({ length: 2 }, () => kinds[Math.floor(rand() * kinds.length)]!)];
  for (const kind of order) {
    n++;
    edits[kind]!();
    const inc = await build(cacheDir, src);
    const cold = await build(join(dir, `cold-${n}`), src);
    const what = `${kind} (edit ${n}, seed ${seed})`;
    assert.equal(cold.reused, 0, what);
    if (process.env.STITCH_VERBOSE) console.log(`${what}: deflated ${inc.deflated} of ${inc.tar}`);
    assert.equal(inc.layer.descriptor.digest, cold.layer.descriptor.digest, what);
    assert.equal(inc.layer.diffid, cold.layer.diffid, what);
    assert.equal(gunzipDigest(inc.cache.blobPath(inc.layer.descriptor.digest)), inc.layer.diffid, what);
    // One edit disturbs the blocks around it (a block is at most ~2.3 MiB here), never the layer.
    assert.equal(inc.deflated + inc.reused, inc.tar, what);
    assert.ok(inc.deflated <= 6 * MiB, `${what}: deflated ${inc.deflated} of ${inc.tar}`);
    assert.ok(inc.reused >= inc.tar - 6 * MiB, `${what}: reused ${inc.reused} of ${inc.tar}`);
  }
});

test('compressed size within 0.1% of single-stream zlib at the same level; block map under 1% of the layer', async () => {
  const dir = tempDir();
  const src = makeTree(dir, rng(7));
  const { cache, layer } = await build(join(dir, 'cache'), src);
  const blob = readFileSync(cache.blobPath(layer.descriptor.digest));
  const tar = execFileSync('gzip', ['-dc'], { input: blob, maxBuffer: 1 << 30 });
  const single = gzipSync(tar, { level: 5 }).length;
  // Smaller is allowed: stored chunks of random bytes come out a little smaller than zlib's.
  assert.ok(blob.length <= single * 1.001, `${blob.length} vs ${single}`);
  const map = await cache.getRecord<{ blocks: string }>(blockMapKey(layer.descriptor.digest));
  assert.ok(map, 'the layer has a block map');
  assert.ok(JSON.stringify(map.metadata).length < blob.length * 0.01);
  // A layer so small that a map would be more than 1% of it gets none.
  const tiny = join(dir, 'tiny');
  mkdirSync(tiny);
  writeFileSync(join(tiny, 'a.txt'), text(rng(8), 3000));
  const small = await build(join(dir, 'cache'), tiny);
  assert.equal(await cache.getRecord(blockMapKey(small.layer.descriptor.digest)), undefined);
  // The same tar compressed anywhere else (an archive's layer) gives the same bytes.
  const again: Buffer[] = [];
  for await (const c of gzipStream([tar.subarray(0, 100_000), tar.subarray(100_000)])) again.push(c);
  assert.ok(Buffer.concat(again).equals(blob), 'gzipStream of the tar is the built layer');
});

test('a corrupt or missing source layer is detected and its blocks deflated again, never copied', async () => {
  const dir = tempDir();
  const rand = rng(11);
  const src = makeTree(dir, rand);
  for (const damage of ['corrupt', 'missing'] as const) {
    const cacheDir = join(dir, `cache-${damage}`);
    const first = await build(cacheDir, src);
    const path = first.cache.blobPath(first.layer.descriptor.digest);
    if (damage === 'corrupt') {
      const b = readFileSync(path);
      for (let at = 5000; at < b.length; at += 200_000) b[at] = (b[at]! ^ 0x55) & 0xff;
      writeFileSync(path, b);
    } else {
      unlinkSync(path);
    }
    writeFileSync(join(src, 'pkg1', 'lib1', 'f1.js'), text(rand, 5000));
    const warnings: string[] = [];
    const inc = await build(cacheDir, src, (m) => warnings.push(m));
    const cold = await build(join(dir, `cold-${damage}`), src);
    assert.equal(inc.layer.descriptor.digest, cold.layer.descriptor.digest);
    assert.equal(gunzipDigest(inc.cache.blobPath(inc.layer.descriptor.digest)), inc.layer.diffid);
    assert.equal(inc[damage], 1, `one ${damage} source noticed`);
    // Blocks whose ranges still hash right may be copied; the rest of the layer is deflated.
    assert.ok(inc.deflated >= inc.tar - MiB, `${inc.deflated} of ${inc.tar}`);
    if (damage === 'corrupt') {
      assert.match(warnings.join('\n'), /does not match its block map \(corrupt: dropped it\)/);
      assert.equal(await first.cache.blobSize(first.layer.descriptor.digest), undefined, 'the corrupt layer was dropped');
    }
  }
});

test('block names worked out after the blocks (a cold build) equal those made with the hashes known', () => {
  const dir = tempDir();
  const src = makeTree(dir, rng(23));
  const entries = walkSource(src);
  const sha = new Map<number, string>();
  entries.forEach((e, i) => {
    if (e.type === 'file') sha.set(i, createHash('sha256').update(readFileSync(e.abs)).digest('hex'));
  });
  const namesOf = (deferred: boolean, known: (i: number) => string | undefined) => {
    const keys: (string | undefined)[] = [];
    const names = new BlockNames('spec', (_b, k) => keys.push(k?.toString('hex')), deferred);
    let blocks = 0;
    for (const b of tarBlocks(entries, { dest: '/app', mtime: 0 }, undefined, undefined, undefined, { names, known })) blocks += b.length > 0 ? 1 : 0;
    return { keys: deferred ? names.resolve((i) => sha.get(i)).map((k) => k?.toString('hex')) : keys, blocks, heard: keys };
  };
  const now = namesOf(false, (i) => sha.get(i));
  const later = namesOf(true, () => undefined);
  assert.ok(now.blocks > 20, `${now.blocks} blocks`);
  assert.equal(now.keys.length, now.blocks);
  assert.ok(now.keys.every((k) => k !== undefined));
  assert.deepEqual(later.keys, now.keys);
  assert.ok(later.heard.every((k) => k === undefined), 'deferred names are not told before resolve');
  // A file whose hash never comes leaves its blocks, and those whose dictionary reaches in, unnamed.
  const big = entries.findIndex((e) => e.abs.endsWith('a.bin'));
  const gap = namesOf(true, () => undefined);
  const partial = new BlockNames('spec', () => undefined, true);
  for (const b of tarBlocks(entries, { dest: '/app', mtime: 0 }, undefined, undefined, undefined, { names: partial, known: () => undefined })) void b;
  const keys = partial.resolve((i) => (i === big ? undefined : sha.get(i)));
  assert.equal(keys.length, gap.blocks);
  const missing = keys.flatMap((k, i) => (k === undefined ? [i] : []));
  assert.ok(missing.length >= 3 && missing.length < 8, `unnamed blocks ${missing.join(',')}`);
  keys.forEach((k, i) => assert.equal(k?.toString('hex'), missing.includes(i) ? undefined : now.keys[i]));
});

test('kocache build: one byte changed inside a big file after a cold build deflates its piece, not the file', async () => {
  // The file's pieces all get new names (a name holds the file's sha256); the unchanged ones are
  // found by their keys, which the cold build hashed.
  const dir = tempDir();
  const src = makeTree(dir, rng(29));
  const build = (cache: string) => cliBuild(src, 'example.com/stitch-big', join(dir, cache));
  await build('cache');
  const big = join(src, 'big', 'a.bin');
  const bytes = readFileSync(big);
  const at = Math.floor(1.5 * MiB);
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(big, bytes);
  const inc = await build('cache');
  const cold = await build('cold');
  assert.equal(inc.digest, cold.digest);
  const deflated = inc.trace['gzip.in'] ?? 0;
  assert.ok(deflated > 0 && deflated < 2 * MiB, `deflated ${deflated} of a ${bytes.length}-byte file's layer: ${JSON.stringify(inc.trace)}`);
});

test('cuts depend on the tar bytes only: the same for any split of the input', () => {
  // A tar from GNU tar, so the rule is checked on a writer other than kocache's own.
  const dir = tempDir();
  const src = makeTree(dir, rng(3));
  const tar = execFileSync('tar', ['--sort=name', '-C', src, '-cf', '-', '.'], { maxBuffer: 1 << 30 });
  const cutsOf = (step: number): number[] => {
    const cuts = new TarCuts();
    const out: number[] = [];
    let start = 0;
    let end = 0;
    while (end < tar.length) {
      end = Math.min(tar.length, end + step);
      for (let c; (c = cuts.cut(tar.subarray(start, end))) > 0;) out.push((start += c));
    }
    for (let c; (c = cuts.cut(tar.subarray(start, end), true)) > 0;) out.push((start += c));
    return out;
  };
  const whole = cutsOf(tar.length);
  assert.ok(whole.length > 10, `${whole.length} cuts`);
  assert.deepEqual(cutsOf(511), whole);
  assert.deepEqual(cutsOf(1 << 20), whole);
  for (let i = 1; i < whole.length; i++) assert.ok(whole[i]! - whole[i - 1]! <= 4 * MiB);
});

test('crc32Combine joins CRCs as zlib.crc32 of the joined bytes', async () => {
  const { crc32 } = await import('node:zlib');
  const rand = rng(5);
  for (const [a, b] of [[0, 0], [1, 0], [0, 1], [100, 3], [5000, 70_000], [1, 1 << 20]] as const) {
    const x = noise(rand, a + 4).subarray(0, a);
    const y = noise(rand, b + 4).subarray(0, b);
    assert.equal(crc32Combine(crc32(x), crc32(y), b), crc32(Buffer.concat([x, y])), `${a}+${b}`);
  }
});

test('archive layers compressed from their tar copy blocks from earlier archive layers, byte-identical to a cold compression', async () => {
  const dir = tempDir();
  const rand = rng(13);
  const src = makeTree(dir, rand);
  const tarOf = () => execFileSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '-C', src, '-cf', '-', '.'], { maxBuffer: 1 << 30 });
  const compress = async (cache: CacheStore, tar: Buffer) => {
    const stored = await cache.writeBlob((async function* () { yield tar; })());
    const before = traceSnapshot();
    const descriptor = await new LayerCompressor({ cache, gzip: { level: 5, jobs: 2 }, jobs: 1 }).finish({ diffid: stored.digest, size: stored.size });
    const after = traceSnapshot();
    return { descriptor, reused: (after['gzip.reused'] ?? 0) - (before['gzip.reused'] ?? 0), deflated: (after['gzip.in'] ?? 0) - (before['gzip.in'] ?? 0) };
  };
  const cache = new CacheStore(join(dir, 'cache'));
  const first = await compress(cache, tarOf());
  assert.equal(first.reused, 0);
  writeFileSync(join(src, 'pkg7', 'lib2', 'f7.js'), text(rand, 4000));
  const tar = tarOf();
  const inc = await compress(cache, tar);
  const cold = await compress(new CacheStore(join(dir, 'cold')), tar);
  assert.equal(inc.descriptor.digest, cold.descriptor.digest);
  assert.ok(inc.deflated <= 6 * MiB && inc.reused >= tar.length - 6 * MiB, `deflated ${inc.deflated}, reused ${inc.reused} of ${tar.length}`);
});

test('kocache build: after a one-file edit KOCACHE_TRACE shows the layer copied, not deflated, and the digest is a cold build\'s', async () => {
  const dir = tempDir();
  const rand = rng(17);
  const src = makeTree(dir, rand);
  const build = (cache: string) => cliBuild(src, 'example.com/stitch-cli', join(dir, cache));
  await build('cache');
  writeFileSync(join(src, 'pkg9', 'lib4', 'f9.js'), text(rand, 3000));
  const inc = await build('cache');
  const cold = await build('cold');
  assert.equal(inc.digest, cold.digest);
  const tar = inc.trace['tar.out']!;
  assert.equal((inc.trace['gzip.in'] ?? 0) + (inc.trace['gzip.reused'] ?? 0), tar);
  assert.ok((inc.trace['gzip.in'] ?? 0) <= 6 * MiB, JSON.stringify(inc.trace));
  assert.ok((inc.trace['blob.range'] ?? 0) > 0, 'compressed bytes were read from the earlier layer');
  // The cold build named its blocks once its files were hashed: the first edit copies by name.
  assert.ok((cold.trace['stitch.named.after'] ?? 0) > 0, JSON.stringify(cold.trace));
  assert.ok((inc.trace['gzip.named'] ?? 0) > 0, JSON.stringify(inc.trace));
  assert.equal(cold.trace['gzip.in'], tar);
  assert.equal(cold.trace['gzip.reused'] ?? 0, 0);
});
