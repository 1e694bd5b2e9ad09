import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { markBuilt } from '../src/cache/built.js';
import { BUILT_NAMESPACE, binNamespace, diffIdKey, treeKey, treeMark } from '../src/cache/keys.js';
import { DEFAULT_GZIP, gzipSpec } from '../src/compress/options.js';
import { tarSpec } from '../src/layer/tarspec.js';
import { CacheStore } from '../src/cache/store.js';
import { traceSnapshot } from '../src/util/trace.js';
import { buildLayer } from '../src/layer/build.js';
import { parseLayerSource } from '../src/layer/source.js';
import { assertUnchangedFiles, tarBlocks } from '../src/layer/tar.js';
import { fingerprint } from '../src/layer/fingerprint.js';
import { FINGERPRINT_FORMAT } from '../src/layer/formats.js';
import { StatCache } from '../src/layer/statcache.js';
import { walkSource, type SourceEntry } from '../src/layer/walk.js';
import { parsePlatform } from '../src/oci/platform.js';
import { tempDir } from './helpers/cli.js';

const platform = parsePlatform('linux/amd64');

function sampleTree(root: string, opts: { umask?: boolean } = {}): string {
  const src = join(root, 'src');
  mkdirSync(join(src, 'bin'), { recursive: true });
  mkdirSync(join(src, 'empty-dir'), { recursive: true });
  writeFileSync(join(src, 'bin', 'tool'), '#!/bin/sh\necho hi\n');
  chmodSync(join(src, 'bin', 'tool'), opts.umask ? 0o700 : 0o755);
  writeFileSync(join(src, 'readme.txt'), 'hello\n');
  chmodSync(join(src, 'readme.txt'), opts.umask ? 0o600 : 0o664);
  const long = `${'d'.repeat(120)}/${'f'.repeat(130)}.txt`;
  mkdirSync(join(src, 'd'.repeat(120)), { recursive: true });
  writeFileSync(join(src, long), 'long name\n');
  writeFileSync(join(src, 'grüße-日本.txt'), 'non-ascii\n');
  symlinkSync('readme.txt', join(src, 'link-in'));
  symlinkSync('/etc/passwd', join(src, 'link-out'));
  return src;
}

async function build(cacheDir: string, spec: string, extra: Partial<Parameters<typeof buildLayer>[1]> = {}) {
  const cache = new CacheStore(cacheDir);
  return { cache, layer: await buildLayer(parseLayerSource(spec), { cache, importPath: 'example.com/app', platform, ...extra }) };
}

test('the layer is reproducible: same inputs on another tree, other mtimes and umask give byte-identical blobs', async () => {
  const a = tempDir();
  const b = tempDir();
  const srcA = sampleTree(a);
  const srcB = sampleTree(b, { umask: true });
  // Different mtimes on the second tree: they must not reach the layer.
  utimesSync(join(srcB, 'readme.txt'), new Date('2001-01-01'), new Date('2001-01-01'));
  const one = await build(join(a, 'cache'), `${srcA}:/app`);
  const two = await build(join(b, 'cache'), `${srcB}:/app`);
  // umask-only differences (0664 vs 0600) keep the same layer, since only execute bits survive.
  assert.equal(one.layer.descriptor.digest, two.layer.descriptor.digest);
  assert.equal(one.layer.diffid, two.layer.diffid);
  const blob = readFileSync(one.cache.blobPath(one.layer.descriptor.digest));
  assert.equal(`sha256:${createHash('sha256').update(blob).digest('hex')}`, one.layer.descriptor.digest);
  assert.equal(blob.length, one.layer.descriptor.size);
  assert.equal(`sha256:${createHash('sha256').update(gunzipSync(blob)).digest('hex')}`, one.layer.diffid);
});

test('gzip header has no mtime, no file name and a fixed OS byte', async () => {
  const dir = tempDir();
  const src = sampleTree(dir);
  const { cache, layer } = await build(join(dir, 'cache'), `${src}:/app`);
  const blob = readFileSync(cache.blobPath(layer.descriptor.digest));
  assert.deepEqual([...blob.subarray(0, 10)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
  // Any gunzip reads it: GNU gzip agrees.
  execFileSync('gzip', ['-t'], { input: blob });
});

test('tar entries: sorted, parents of the destination, mtime 0, root owner with empty names, modes, links, PAX names', async () => {
  const dir = tempDir();
  const src = sampleTree(dir);
  const { cache, layer } = await build(join(dir, 'cache'), `${src}:/opt/app`);
  const listing = execFileSync('tar', ['-tvzf', cache.blobPath(layer.descriptor.digest), '--numeric-owner', '--full-time'], {
    encoding: 'utf8',
  });
  const lines = listing.trim().split('\n');
  const names = lines.map((l) => l.split(/\s+/).slice(5).join(' '));
  assert.equal(names[0], 'opt/');
  assert.equal(names[1], 'opt/app/');
  assert.ok(names.includes('opt/app/bin/'), 'directories end with /');
  assert.ok(names.includes('opt/app/empty-dir/'));
  assert.ok(names.includes(`opt/app/${'d'.repeat(120)}/${'f'.repeat(130)}.txt`), 'long name survives');
  assert.ok(names.includes('opt/app/grüße-日本.txt'), 'non-ASCII name survives');
  assert.ok(names.includes('opt/app/link-out -> /etc/passwd'), 'symlink kept as a link, not followed');
  const sortedNames = [...names].map((n) => n.replace(/ -> .*/, '').replace(/\/$/, ''));
  const bytewise = [...sortedNames].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
  assert.deepEqual(sortedNames, bytewise, 'entries in byte order');
  for (const l of lines) {
    assert.match(l, /^\S+ 0\/0 /, `owner 0/0: ${l}`);
    assert.match(l, / 1970-01-01 00:00:00 /, `mtime 0: ${l}`);
  }
  const mode = (name: string) => lines.find((l) => l.endsWith(` ${name}`))!.split(/\s+/)[0];
  assert.equal(mode('opt/app/bin/tool'), '-rwxr-xr-x');
  assert.equal(mode('opt/app/readme.txt'), '-rw-r--r--');
  assert.equal(mode('opt/app/bin/'), 'drwxr-xr-x');
  // uname/gname are empty: GNU tar shows numeric ids only when asked, so read the raw header.
  const raw = gunzipSync(readFileSync(cache.blobPath(layer.descriptor.digest)));
  assert.equal(raw.subarray(265, 265 + 32).toString('latin1').replace(/\0+$/, ''), '');
});

test('SOURCE_DATE_EPOCH-style mtime changes the bytes and the cache key', async () => {
  const dir = tempDir();
  const src = sampleTree(dir);
  const zero = await build(join(dir, 'cache'), `${src}:/app`);
  const later = await build(join(dir, 'cache'), `${src}:/app`, { mtime: 1700000000 });
  assert.notEqual(zero.layer.diffid, later.layer.diffid);
  assert.equal(later.layer.cached, false);
  const listing = execFileSync('tar', ['-tvzf', later.cache.blobPath(later.layer.descriptor.digest), '--full-time'], { encoding: 'utf8' });
  assert.match(listing, /2023-11-14 22:13:20/);
});

test('the destination path is part of the key (ko#1704): same source at two paths gives two layers', async () => {
  const dir = tempDir();
  const src = sampleTree(dir);
  const a = await build(join(dir, 'cache'), `${src}:/a`);
  const b = await build(join(dir, 'cache'), `${src}:/b`);
  assert.equal(b.layer.cached, false);
  assert.notEqual(a.layer.diffid, b.layer.diffid);
  const again = await build(join(dir, 'cache'), `${src}:/a`);
  assert.equal(again.layer.cached, true);
  assert.equal(again.layer.descriptor.digest, a.layer.descriptor.digest);
});

test('any byte change, chmod +x, rename or new empty directory gives another build id', async () => {
  const dir = tempDir();
  const src = sampleTree(dir);
  const cacheDir = join(dir, 'cache');
  const ids = new Set<string>();
  const record = async () => {
    const r = await build(cacheDir, `${src}:/app`);
    ids.add(r.layer.buildId);
    return r.layer;
  };
  await record();
  writeFileSync(join(src, 'readme.txt'), 'hellO\n'); // same size, one byte
  await record();
  chmodSync(join(src, 'readme.txt'), 0o755);
  await record();
  execFileSync('mv', [join(src, 'readme.txt'), join(src, 'readme2.txt')]);
  await record();
  mkdirSync(join(src, 'new-empty'));
  await record();
  assert.equal(ids.size, 5);
});

test('stat cache: a same-size rewrite that restores the old mtime is still seen (ctime, racy window)', async () => {
  const dir = tempDir();
  const src = join(dir, 'src');
  mkdirSync(src);
  const file = join(src, 'data.bin');
  writeFileSync(file, 'aaaaaaaa');
  const old = new Date(Date.now() - 3600_000);
  utimesSync(file, old, old);
  const cacheDir = join(dir, 'cache');
  const first = await build(cacheDir, `${src}:/`);
  const second = await build(cacheDir, `${src}:/`);
  assert.equal(second.layer.cached, true);
  writeFileSync(file, 'bbbbbbbb');
  utimesSync(file, old, old);
  const third = await build(cacheDir, `${src}:/`);
  assert.equal(third.layer.cached, false);
  assert.notEqual(third.layer.diffid, first.layer.diffid);
});

test("stat cache: a hit of an unchanged tree is answered by the tree's listing, without the file of stamps", async () => {
  const dir = tempDir();
  const src = sampleTree(dir);
  // Past the racy window (a file changed within 2 s of a walk is never trusted; ctime cannot be set back).
  await new Promise((r) => setTimeout(r, 2100));
  const cacheDir = join(dir, 'cache');
  const first = await build(cacheDir, `${src}:/`);
  const stat = join(cacheDir, 'stat');
  for (const name of readdirSync(stat)) if (!name.includes('.listing.')) writeFileSync(join(stat, name), '[');
  const before = traceSnapshot()['file.read'] ?? 0;
  const again = await build(cacheDir, `${src}:/`);
  assert.equal(again.layer.cached, true);
  assert.equal(again.layer.buildId, first.layer.buildId);
  assert.equal((traceSnapshot()['file.read'] ?? 0) - before, 0, 'no file hashed again');
});

test('stat cache: a stamp holds only while size, mtime, ctime, inode and device all match', () => {
  const dir = tempDir();
  const cacheDir = join(dir, 'cache');
  const src = join(dir, 'src');
  mkdirSync(src);
  const content: Record<string, string> = { f: 'one', ['__proto__']: 'two', constructor: 'three' }; // computed: an own key
  for (const [name, text] of Object.entries(content)) writeFileSync(join(src, name), text);
  const files = walkSource(src).filter((e) => e.type === 'file');
  assert.equal(files.length, 3);
  const sha = (text: string) => createHash('sha256').update(text).digest('hex');
  // Taken "later": past the racy window, so every stamp is kept (a fresh file's never is).
  const later = Date.now() + 10_000;
  const first = new StatCache(cacheDir, src, later);
  assert.equal(first.stampedFiles(), 0, 'no stamps saved yet');
  for (const e of files) assert.equal(first.hash(e), sha(content[e.rel]!));
  first.save();

  assert.equal(new StatCache(cacheDir, src, later).stampedFiles(), 3, 'the tree\'s size, from the stamps file');
  const again = new StatCache(cacheDir, src, later);
  for (const e of files) assert.equal(again.lookup(e), sha(content[e.rel]!), `stamp of ${e.rel} kept`);
  const f = files.find((e) => e.rel === 'f')!;
  for (const field of ['size', 'mtimeMs', 'ctimeMs', 'ino', 'dev'] as const) {
    assert.equal(again.lookup({ ...f, [field]: f[field] + 1 }), undefined, `${field} differs`);
  }
  // Sub-millisecond times survive the file: a microsecond apart is another stamp.
  assert.equal(again.lookup({ ...f, mtimeMs: f.mtimeMs + 0.001 }), undefined);
  assert.equal(again.lookup({ ...f, ctimeMs: f.ctimeMs + 0.001 }), undefined);

  // Not within the racy window of the walk: not kept.
  const racy = new StatCache(join(dir, 'cache2'), src, Math.max(f.mtimeMs, f.ctimeMs) + 1000);
  racy.record(f, sha('one'));
  racy.save();
  assert.equal(new StatCache(join(dir, 'cache2'), src, later).lookup(f), undefined);

  // Asked out of the walk's order, each stamp still answers.
  const reversed = new StatCache(cacheDir, src, later);
  for (const e of [...files].reverse()) assert.equal(reversed.lookup(e), sha(content[e.rel]!), `stamp of ${e.rel} kept, asked in reverse`);

  // A damaged file or one of another version is no stamp at all, and no error.
  const [name] = readdirSync(join(cacheDir, 'stat'));
  const good = readFileSync(join(cacheDir, 'stat', name!));
  const hexAt = 64 + 3 * 5 * 8;
  const damaged = {
    'one byte short': good.subarray(0, good.length - 1),
    'a byte more': Buffer.concat([good, Buffer.from('x')]),
    'a hash digit not hex': Buffer.concat([good.subarray(0, hexAt), Buffer.from('g'), good.subarray(hexAt + 1)]),
    'another version': Buffer.from(good.toString('latin1').replace('stamps 3 ', 'stamps 4 '), 'latin1'),
  };
  for (const [what, body] of Object.entries(damaged)) {
    writeFileSync(join(cacheDir, 'stat', name!), body);
    assert.equal(new StatCache(cacheDir, src, later).lookup(f), undefined, what);
  }
  for (const body of ['{"version":1,"entries":{"f":{"size":3}}}', '{"version":2,"entries":{"f":[3]}}', 'null', '[', '{"version":2,"entries":{"f":"x"}}']) {
    writeFileSync(join(cacheDir, 'stat', name!), body);
    assert.equal(new StatCache(cacheDir, src, later).lookup(f), undefined, body);
  }
});

test("stat cache: a tree's fingerprint is known again only while every entry's stat is the same and every file was trusted", () => {
  const dir = tempDir();
  const cacheDir = join(dir, 'cache');
  const src = sampleTree(dir);
  const later = Date.now() + 10_000;
  const entries = walkSource(src);
  const first = new StatCache(cacheDir, src, later);
  assert.equal(first.knownFingerprint(entries), undefined, 'nothing known in an empty cache');
  const id = fingerprint(entries, first);
  first.save({ entries, fingerprint: id });
  assert.equal(new StatCache(cacheDir, src, later).knownFingerprint(entries), id);
  // The file of stamps is not needed for it (the listing file stands alone).
  const stat = join(cacheDir, 'stat');
  const stamps = readdirSync(stat).find((n) => !n.includes('.listing.'))!;
  writeFileSync(join(stat, stamps), '[');
  assert.equal(new StatCache(cacheDir, src, later).knownFingerprint(entries), id);

  // Any field of any kind of entry changed, an entry more or less, or another order: not known.
  const changed = (i: number, patch: Partial<SourceEntry>) => entries.map((e, j) => (j === i ? { ...e, ...patch } : e));
  const kinds = (['file', 'directory', 'symlink'] as const).map((t) => entries.findIndex((e) => e.type === t));
  const variants: [string, SourceEntry[]][] = [];
  for (const i of kinds) {
    const e = entries[i]!;
    for (const field of ['mode', 'size', 'mtimeMs', 'ctimeMs', 'ino', 'dev'] as const) variants.push([`${e.type} ${field}`, changed(i, { [field]: e[field] + 1 })]);
    variants.push([`${e.type} mtime by a microsecond`, changed(i, { mtimeMs: e.mtimeMs + 0.001 })]);
    variants.push([`${e.type} path`, changed(i, { rel: `${e.rel}x` })]);
    variants.push([`${e.type} type`, changed(i, { type: e.type === 'file' ? 'directory' : 'file' })]);
  }
  const link = kinds[2]!;
  variants.push(['link target', changed(link, { linkTarget: `${entries[link]!.linkTarget}x` })]);
  variants.push(['one entry less', entries.slice(1)]);
  variants.push(['one entry more', [...entries, { ...entries[kinds[0]!]!, rel: 'zzz' }]]);
  variants.push(['another order', [...entries].reverse()]);
  for (const [what, listing] of variants) assert.equal(new StatCache(cacheDir, src, later).knownFingerprint(listing), undefined, what);

  // A file too fresh to trust at this walk: its stamp is not kept, so neither is the tree's.
  const fresh = join(dir, 'cache-fresh');
  const f = entries.find((e) => e.type === 'file')!;
  const racy = new StatCache(fresh, src, Math.max(f.mtimeMs, f.ctimeMs) + 1000);
  racy.save({ entries, fingerprint: fingerprint(entries, racy) });
  assert.equal(new StatCache(fresh, src, later).knownFingerprint(entries), undefined);

  // A damaged listing file or one of another version is no answer, and no error.
  const listing = readdirSync(stat).find((n) => n.includes('.listing.'))!;
  for (const body of ['[', 'null', '{"version":2,"listing":"x","fingerprint":"y"}', '{"version":1,"listing":3}']) {
    writeFileSync(join(stat, listing), body);
    assert.equal(new StatCache(cacheDir, src, later).knownFingerprint(entries), undefined, body);
  }
});

test('the fingerprint of fixed input is pinned, with its format number (listing files trust fingerprints of one format)', () => {
  const base = { abs: '/x', mtimeMs: 1, ctimeMs: 1, ino: 1, dev: 1 };
  const entries: SourceEntry[] = [
    { ...base, rel: '', type: 'directory', mode: 0o755, size: 0 },
    { ...base, rel: 'bin', type: 'directory', mode: 0o755, size: 0 },
    { ...base, rel: 'bin/app', type: 'file', mode: 0o755, size: 12 },
    { ...base, rel: 'link', type: 'symlink', mode: 0o777, size: 0, linkTarget: 'bin/app' },
    { ...base, rel: 'grüße.txt', type: 'file', mode: 0o644, size: 3 },
  ];
  const stats = { hash: (e: SourceEntry) => (e.rel === 'bin/app' ? 'a' : 'b').repeat(64), record: () => {} } as unknown as StatCache;
  // A change to the fingerprint changes this id: then bump FINGERPRINT_FORMAT too, with the id here,
  // or an unchanged tree keeps the id of the old format from its listing file.
  assert.deepEqual(
    { format: FINGERPRINT_FORMAT, id: fingerprint(entries, stats) },
    { format: 1, id: 'fp:4048d89d766dc8a7c5632f48583c61648247a76e2264b14d6d37f1bfd5f537e7' },
  );
});

test('a Go binary is keyed by its embedded Go build ID, as ko does', async () => {
  const dir = tempDir();
  const bin = join(dir, 'app');
  const id = 'abcDEF123/xyz-_456';
  const body = (fill: string) =>
    Buffer.concat([Buffer.from('\x7fNOTELF-raw-text-then:', 'latin1'), Buffer.from(`\xff Go build ID: "${id}"\n \xff`, 'latin1'), Buffer.from(fill.repeat(64))]);
  writeFileSync(bin, body('a'), { mode: 0o755 });
  const cacheDir = join(dir, 'cache');
  const first = await build(cacheDir, `${bin}:/ko-app/app`);
  assert.equal(first.layer.buildId, `go:${id}:${body('a').length}:111`);
  // Same build ID and size: the Go toolchain promises the same binary, so the cache answers.
  writeFileSync(bin, body('b'), { mode: 0o755 });
  const second = await build(cacheDir, `${bin}:/ko-app/app`);
  assert.equal(second.layer.cached, true);
  assert.equal(second.layer.descriptor.digest, first.layer.descriptor.digest);
});

test('an ELF Go build ID note is found', async () => {
  const { readGoBuildId } = await import('../src/layer/gobuildid.js');
  const dir = tempDir();
  const id = 'elfnote/abc';
  // A minimal ELF64 LE header with one PT_NOTE program header pointing at a "Go" note of type 4.
  const note = Buffer.alloc(12 + 4 + 12);
  note.writeUInt32LE(3, 0); // namesz "Go\0"
  note.writeUInt32LE(id.length + 1, 4);
  note.writeUInt32LE(4, 8);
  note.write('Go\0', 12, 'latin1');
  note.write(id, 16, 'latin1');
  const ehdr = Buffer.alloc(64);
  ehdr.writeUInt32BE(0x7f454c46, 0);
  ehdr[4] = 2;
  ehdr[5] = 1;
  ehdr.writeBigUInt64LE(64n, 0x20); // phoff
  ehdr.writeUInt16LE(56, 0x36); // phentsize
  ehdr.writeUInt16LE(1, 0x38); // phnum
  const phdr = Buffer.alloc(56);
  phdr.writeUInt32LE(4, 0); // PT_NOTE
  phdr.writeBigUInt64LE(120n, 0x08); // offset
  phdr.writeBigUInt64LE(BigInt(note.length), 0x20); // filesz
  const file = join(dir, 'elf');
  writeFileSync(file, Buffer.concat([ehdr, phdr, note]));
  assert.equal(readGoBuildId(file), id);
  writeFileSync(join(dir, 'plain'), 'not a go binary');
  assert.equal(readGoBuildId(join(dir, 'plain')), undefined);
});

test('the walk orders paths by their UTF-8 bytes, also where UTF-16 order differs (U+E000 and up, surrogate pairs)', () => {
  const dir = tempDir();
  // UTF-16 puts the emoji (a surrogate pair, D83D...) before U+E000; UTF-8 puts it after (F0 > EE).
  const names = ['a-b', 'a.b', 'Z', 'é', '\uE000', '😀', '\uFF21'];
  for (const n of names) writeFileSync(join(dir, n), n);
  mkdirSync(join(dir, 'a'));
  writeFileSync(join(dir, 'a', 'b'), '');
  const rels = walkSource(dir).map((e) => e.rel).filter((r) => r !== '');
  const bytewise = [...rels].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
  assert.deepEqual(rels, bytewise);
  assert.ok(rels.indexOf('\uE000') < rels.indexOf('😀'));
  // Without any such name the fast path is taken; its order must be the same bytes order.
  const ascii = tempDir();
  for (const n of ['a-b', 'a.b', 'Z', 'a', '_x']) writeFileSync(join(ascii, n), n);
  const plain = walkSource(ascii).map((e) => e.rel).filter((r) => r !== '');
  assert.deepEqual(plain, [...plain].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));
});

test('a first build to a destination reads the tree once, fingerprinting what it tars; the id is the one a separate pass gives', async () => {
  const dir = tempDir();
  const src = sampleTree(dir);
  writeFileSync(join(src, 'data.bin'), Buffer.alloc(3 << 20, 7));
  const bytes = walkSource(src).reduce((n, e) => n + (e.type === 'file' ? e.size : 0), 0);
  // Past the stat cache's racy window (files changed within 2 s of a build are always re-read).
  await new Promise((r) => setTimeout(r, 2100));
  const reads = async (f: () => Promise<unknown>) => {
    const before = traceSnapshot()['file.read'] ?? 0;
    await f();
    return (traceSnapshot()['file.read'] ?? 0) - before;
  };

  let once!: Awaited<ReturnType<typeof build>>;
  assert.equal(await reads(async () => (once = await build(join(dir, 'fresh'), `${src}:/app`))), bytes, 'each file read once');
  assert.equal(once.layer.cached, false);

  // A cache that has built with these tar settings before fingerprints the tree first (a hit is
  // possible), then tars it: two reads. Same id, same layer.
  const seen = join(dir, 'seen');
  markBuilt(seen, treeMark(tarSpec({ dest: '/app', mtime: 0 })));
  let twice!: Awaited<ReturnType<typeof build>>;
  assert.equal(await reads(async () => (twice = await build(seen, `${src}:/app`))), 2 * bytes, 'fingerprint pass, then tar');
  assert.equal(twice.layer.buildId, once.layer.buildId);
  assert.deepEqual(twice.layer.descriptor, once.layer.descriptor);

  // The first build left its hashes in the stat cache: the next one is a hit that reads nothing.
  let hit!: Awaited<ReturnType<typeof build>>;
  assert.equal(await reads(async () => (hit = await build(join(dir, 'fresh'), `${src}:/app`))), 0);
  assert.equal(hit.layer.cached, true);
});

test('a layer of many blocks: what gunzips is what was hashed, whatever the jobs (blocks are reused once compressed)', async () => {
  const dir = tempDir();
  const src = join(dir, 'many');
  mkdirSync(src);
  // Files of several sizes, random bytes, so a block overwritten too early would show.
  const files: [string, Buffer][] = [];
  for (let i = 0; i < 24; i++) files.push([`f${String(i).padStart(2, '0')}.bin`, randomBytes(((i * 379_991) % 900_000) + 100_000)]);
  for (const [name, body] of files) writeFileSync(join(src, name), body);
  const digests = new Set<string>();
  for (const jobs of [1, 3]) {
    const { cache, layer } = await build(join(dir, `cache-${jobs}`), `${src}:/data`, { gzip: { level: 1, jobs } });
    const tar = gunzipSync(readFileSync(cache.blobPath(layer.descriptor.digest)));
    assert.ok(tar.length > 10 << 20, 'many blocks');
    assert.equal(`sha256:${createHash('sha256').update(tar).digest('hex')}`, layer.diffid);
    const out = join(dir, `out-${jobs}`);
    mkdirSync(out);
    execFileSync('tar', ['-x', '-C', out], { input: tar });
    for (const [name, body] of files) assert.ok(readFileSync(join(out, 'data', name)).equals(body), name);
    digests.add(layer.descriptor.digest);
  }
  assert.equal(digests.size, 1);
});

test('a file that grows or shrinks between the walk and the tar fails the layer, naming the file', () => {
  const dir = tempDir();
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a.txt'), 'a'.repeat(5000));
  writeFileSync(join(src, 'b.txt'), 'b'.repeat(5000));
  const entries = walkSource(src);
  const drain = () => {
    for (const block of tarBlocks(entries, { dest: '/app', mtime: 0 })) assert.ok(block.length > 0);
  };
  drain(); // as walked: fine
  for (const body of ['b'.repeat(6000), 'b'.repeat(4000)]) {
    writeFileSync(join(src, 'b.txt'), body);
    assert.throws(drain, (err: Error) => err.message === `${join(src, 'b.txt')} changed while it was being read; build again`);
  }
  // A big file (cut into 1 MiB pieces) grown by one byte: found by the read of its last piece.
  writeFileSync(join(src, 'b.txt'), 'b'.repeat(5000));
  writeFileSync(join(src, 'c.bin'), Buffer.alloc(2 * 1024 * 1024, 1));
  const grown = walkSource(src);
  const drainGrown = () => {
    for (const block of tarBlocks(grown, { dest: '/app', mtime: 0 })) assert.ok(block.length > 0);
  };
  drainGrown();
  writeFileSync(join(src, 'c.bin'), Buffer.alloc(2 * 1024 * 1024 + 1, 1));
  assert.throws(drainGrown, (err: Error) => err.message === `${join(src, 'c.bin')} changed while it was being read; build again`);
});

test('a file rewritten in place at the same size after the walk fails the layer too (its key was made from other bytes)', async () => {
  const dir = tempDir();
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'small.txt'), 'a'.repeat(5000));
  writeFileSync(join(src, 'big.bin'), Buffer.alloc(2 * 1024 * 1024, 1));
  const entries = walkSource(src);
  const drain = () => {
    for (const block of tarBlocks(entries, { dest: '/app', mtime: 0 })) assert.ok(block.length > 0);
  };
  drain(); // as walked: fine
  assert.doesNotThrow(() => assertUnchangedFiles(entries.filter((e) => e.type === 'file')));
  // Past the file system's clock tick, so the write moves the times.
  await new Promise((r) => setTimeout(r, 30));
  for (const [name, body] of [['small.txt', 'b'.repeat(5000)], ['big.bin', Buffer.alloc(2 * 1024 * 1024, 2)]] as const) {
    writeFileSync(join(src, name), body);
    const message = `${join(src, name)} changed while it was being read; build again`;
    assert.throws(drain, (err: Error) => err.message === message);
    // The files a worker read in a lazy pack are checked after it, by lstat.
    assert.throws(() => assertUnchangedFiles(entries.filter((e) => e.rel === name)), (err: Error) => err.message === message);
  }
});

test('a cache filled under the first key scheme keeps answering, and its entries move to the new keys', async () => {
  const dir = tempDir();
  const src = sampleTree(dir);
  const cacheDir = join(dir, 'cache');
  const { cache, layer } = await build(cacheDir, `${src}:/app`);
  const spec = tarSpec({ dest: '/app', mtime: 0 });
  const compression = gzipSpec(DEFAULT_GZIP);
  const blob = { digest: layer.descriptor.digest, size: layer.descriptor.size };
  // Turn the cache into what the first scheme wrote: the fingerprint and the diffid under
  // bin/<import-path>/<platform>/, the namespace's mark in built/, nothing of the new keys.
  const ns = binNamespace('example.com/app', platform);
  await cache.dropRecord(treeKey(FINGERPRINT_FORMAT, layer.buildId, spec));
  await cache.dropRecord(diffIdKey(BUILT_NAMESPACE, layer.diffid, compression));
  rmSync(join(cacheDir, 'built'), { recursive: true });
  markBuilt(cacheDir, ns);
  await cache.putRecord(`${ns}/buildid/${layer.buildId}/${spec}`, blob, { diffid: layer.diffid, tarSpec: spec });
  await cache.putRecord(`${ns}/diffid/${layer.diffid}/${compression}`, blob, { diffid: layer.diffid, compression, descriptor: layer.descriptor });
  // An entry of an older tar writer under the same namespace: another key scheme, never asked.
  await cache.putRecord(`${ns}/buildid/${layer.buildId}/${spec.replace('tar1', 'tar0')}`, { digest: blob.digest, size: blob.size }, { diffid: `sha256:${'0'.repeat(64)}`, tarSpec: 'tar0' });

  const tarred = () => traceSnapshot()['tar.out'] ?? 0;
  const before = tarred();
  const again = await build(cacheDir, `${src}:/app`);
  assert.equal(again.layer.cached, true, 'the first scheme\'s record answered');
  assert.deepEqual(again.layer.descriptor, layer.descriptor);
  assert.equal(tarred(), before, 'no tar');
  assert.ok(await cache.getRecord(treeKey(FINGERPRINT_FORMAT, layer.buildId, spec)), 'moved to the content key');
  assert.ok(await cache.getRecord(diffIdKey(BUILT_NAMESPACE, layer.diffid, compression)));

  // Now the content key answers for any import path, which the first scheme's record could not.
  const other = await buildLayer(parseLayerSource(`${src}:/app`), { cache, importPath: 'example.com/other', platform: parsePlatform('linux/arm64') });
  assert.equal(other.cached, true);
  assert.equal(tarred(), before);
});
