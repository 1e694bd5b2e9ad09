import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { gzipBlocks, gzipStream, gzipSpec } from '../../src/compress/gzip.js';
import { CHUNK, looksIncompressible } from '../../src/compress/incompressible.js';
import { traceSnapshot } from '../../src/util/trace.js';

/** gzipBlocks over blocks of `blockSize` (the cut rule is tested on its own, in stitch.test.ts). */
async function gz(data: Buffer, jobs: number, blockSize = 64 * 1024): Promise<Buffer> {
  function* blocks() {
    for (let off = 0; off < data.length; off += blockSize) yield data.subarray(off, off + blockSize);
  }
  const out: Buffer[] = [];
  for await (const c of gzipBlocks(blocks(), { level: 6, jobs })) out.push(c);
  return Buffer.concat(out);
}

/** gzipStream (cut by the rule) over input fed in uneven pieces: the cuts must not depend on how it arrives. */
async function gzStream(data: Buffer, jobs: number, pieces = 7): Promise<Buffer> {
  async function* src() {
    const step = Math.max(1, Math.floor(data.length / pieces));
    for (let off = 0; off < data.length; off += step) yield data.subarray(off, off + step);
  }
  const out: Buffer[] = [];
  for await (const c of gzipStream(src(), { level: 6, jobs })) out.push(c);
  return Buffer.concat(out);
}

function sample(n: number): Buffer {
  // Half random, half repetitive: both stored and compressed deflate blocks occur.
  const text = Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(Math.ceil(n / 88)));
  return Buffer.concat([randomBytes(Math.floor(n / 2)), text]).subarray(0, n);
}

test('block-parallel gzip round-trips through zlib and GNU gzip, as one member', async () => {
  const data = sample(1_000_003);
  const out = await gz(data, 3);
  assert.deepEqual(gunzipSync(await gzStream(data, 2)), data);
  assert.deepEqual(gunzipSync(out), data);
  assert.deepEqual(execFileSync('gzip', ['-dc'], { input: out, maxBuffer: 1 << 26 }), data);
  // One member: exactly one gzip header, at the start.
  assert.equal(out.indexOf(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]), 1), -1);
});

test('the bytes depend on input and level only, never on the number of jobs or how input arrives', async () => {
  const data = sample(5_777_777);
  const digests = new Set<string>();
  for (const jobs of [1, 2, 3, 8]) digests.add(createHash('sha256').update(await gz(data, jobs)).digest('hex'));
  assert.equal(digests.size, 1);
  const streamed = new Set<string>();
  for (const [jobs, pieces] of [[1, 1], [2, 7], [3, 1000]] as const) streamed.add(createHash('sha256').update(await gzStream(data, jobs, pieces)).digest('hex'));
  assert.equal(streamed.size, 1);
  assert.notEqual(gzipSpec({ level: 6 }), gzipSpec({ level: 5 }));
});

test('edge sizes: empty input, one byte, an exact multiple of the block size', async () => {
  for (const n of [0, 1, 65536, 3 * 65536]) {
    const data = sample(n);
    assert.deepEqual(gunzipSync(await gz(data, 2)), data, `size ${n}`);
    assert.deepEqual(execFileSync('gzip', ['-dc'], { input: await gzStream(data, 2) }), data, `size ${n}`);
  }
});

test('size stays close to single-stream zlib (dictionary carried across blocks)', async () => {
  // Source-code-like text: varied words, so the size is decided by matches, not block overhead.
  const words = ['func', 'return', 'layer', 'digest', 'cache', 'err', 'nil', 'ctx', 'import', 'const', 'struct'];
  let x = 12345;
  const parts: string[] = [];
  for (let i = 0; i < 400_000; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    parts.push(words[x % words.length]!, x % 9 === 0 ? '\n' : ' ');
  }
  const text = Buffer.from(parts.join(''));
  const parallel = await gz(text, 2, 1 << 20);
  const single = gzipSync(text, { level: 6 });
  assert.ok(parallel.length <= single.length * 1.02, `${parallel.length} vs ${single.length}`);
});

/** Bytes that look random, the same on every run (a sha256 counter stream). */
function noise(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0, off = 0; off < n; i++) off += createHash('sha256').update(`${seed}:${i}`).digest().copy(out, off);
  return out;
}

test('incompressible chunks are judged by their bytes: random yes, text no, 2^n-byte records no', () => {
  for (let i = 0; i < 50; i++) assert.equal(looksIncompressible(noise(CHUNK, `chunk${i}`)), true, `chunk${i}`);
  assert.equal(looksIncompressible(Buffer.from('func main() { return layer.digest }\n'.repeat(2000)).subarray(0, CHUNK)), false);
  // A random byte then 15 zeros, over and over: a sample every 16th byte would see only the random
  // bytes and call it incompressible; deflate shrinks it to a fraction.
  const records = Buffer.alloc(CHUNK);
  const ids = noise(CHUNK / 16, 'ids');
  for (let i = 0; i < ids.length; i++) records[i * 16] = ids[i]!;
  assert.equal(looksIncompressible(records), false);
  // Random bytes behind a 512-byte zero tar header: still stored (deflate would gain ~500 bytes).
  assert.equal(looksIncompressible(Buffer.concat([Buffer.alloc(512), noise(CHUNK - 512, 'behind a header')])), true);
  // Compressed data is stored too.
  assert.equal(looksIncompressible(gzipSync(noise(1 << 20, 'x').toString('hex')).subarray(0, CHUNK)), true);
  // A shorter chunk (the last of a block whose size is no multiple of 64 KiB) is judged alike:
  // a fixed limit would miss it, as a smaller sample of random bytes scores higher.
  for (let i = 0; i < 20; i++) assert.equal(looksIncompressible(noise(32 * 1024, `half${i}`)), true, `half${i}`);
  // Too short to judge: compressed as usual.
  assert.equal(looksIncompressible(noise(20_000, 'short')), false);
});

test('random stretches are stored verbatim, text around them compressed, and it all gunzips', async () => {
  // 64 KiB-aligned pieces of text and random bytes, then a short random tail. In blocks of three
  // chunks the second block is text, random, text: its last run must take the random chunk's tail
  // as dictionary, not the previous block's (text: deflate would match into it, and the output
  // would gunzip to the wrong bytes).
  const text = (n: number) => Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(Math.ceil(n / 44))).subarray(0, n);
  const pieces = [text(4 * CHUNK), randomBytes(CHUNK), text(CHUNK), randomBytes(2 * CHUNK), text(CHUNK + 5000), randomBytes(3000)];
  const data = Buffer.concat(pieces);
  const before = traceSnapshot()['gzip.stored'] ?? 0;
  for (const blockSize of [CHUNK, 3 * CHUNK, 1 << 20]) {
    const out = await gz(data, 2, blockSize);
    assert.deepEqual(gunzipSync(out), data, `block size ${blockSize}`);
    assert.deepEqual(execFileSync('gzip', ['-dc'], { input: out, maxBuffer: 1 << 26 }), data);
    // Stored blocks carry their bytes as they are; Huffman-coded ones never would.
    assert.ok(out.includes(pieces[3]!.subarray(1000, 1200)), 'a random stretch is stored verbatim');
    assert.ok(!out.includes(pieces[2]!.subarray(1000, 1200)), 'text is compressed');
    assert.ok(out.length < data.length - 5 * CHUNK, `${out.length} vs ${data.length}`);
  }
  // The three whole random chunks each time; the short tail is too short to judge.
  assert.equal((traceSnapshot()['gzip.stored'] ?? 0) - before, 3 * 3 * CHUNK);
});

test('the output bytes are pinned: the same on every Node line (20, 22, 24: npm run test:matrix)', async () => {
  // Text from a Lehmer generator, 300 KB of sha256 noise (stored), text again. Node 24 bundles
  // another zlib (1.3.2.1 vs 1.3.1 on Node 20 and 22) that gives these same bytes; a zlib that
  // did not would fail here, and its layers would need its version in the compression spec.
  const words = ['layer', 'digest', 'block', 'cache', 'stitch', 'deflate', 'window', 'header'];
  const parts: string[] = [];
  for (let x = 1; parts.length < 400000;) {
    x = (x * 48271) % 2147483647;
    parts.push(words[x % 8]!, x % 11 === 0 ? '\n' : ' ');
  }
  const text = Buffer.from(parts.join(''));
  const input = Buffer.concat([text, noise(300000, 'n').subarray(0, 300000), text.subarray(0, 100000)]);
  const digest = async (g: AsyncIterable<Buffer>) => {
    const h = createHash('sha256');
    for await (const c of g) h.update(c);
    return h.digest('hex');
  };
  const pinned: Record<number, string> = {
    1: '36910127a5a607d49e0cade49b8276f7dd1014d2b130efe72b6caa56b22b65fc',
    5: '3cc1ccf0beaac0acbf87d469d35d53c796b2ed62d50b0ef590af880449867027',
    6: 'c5def69ed29ce42b70d5c753646b0f22fa32b22ecfc644d68ef828581d82a120',
    9: 'fbd4f576cb26aecd59a03b699360053472d14c28187dd6808d6f53c39ab65e8c',
  };
  for (const level of [1, 5, 6, 9]) assert.equal(await digest(gzipStream([input], { level, jobs: 2 })), pinned[level], `level ${level}`);
  // Three blocks, each with the one before as dictionary.
  const three = [input.subarray(0, 600000), input.subarray(600000, 1500000), input.subarray(1500000)];
  assert.equal(await digest(gzipBlocks(three, { level: 5, jobs: 2 })), 'b069a850587ff789f9e9cf142572471a3a65d14314e16e83b695cff6962458f3');
});
