import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { gzipStream, gzipSpec } from '../src/compress/gzip.js';

async function gz(data: Buffer, jobs: number, blockSize = 64 * 1024, pieces = 7): Promise<Buffer> {
  // Feed the input in uneven pieces: block boundaries must not depend on how it arrives.
  async function* src() {
    const step = Math.max(1, Math.floor(data.length / pieces));
    for (let off = 0; off < data.length; off += step) yield data.subarray(off, off + step);
  }
  const out: Buffer[] = [];
  for await (const c of gzipStream(src(), { level: 6, blockSize, jobs })) out.push(c);
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
  assert.deepEqual(gunzipSync(out), data);
  assert.deepEqual(execFileSync('gzip', ['-dc'], { input: out, maxBuffer: 1 << 26 }), data);
  // One member: exactly one gzip header, at the start.
  assert.equal(out.indexOf(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]), 1), -1);
});

test('the bytes depend on input, level and block size only, never on the number of jobs', async () => {
  const data = sample(777_777);
  const digests = new Set<string>();
  for (const jobs of [1, 2, 3, 8]) digests.add(createHash('sha256').update(await gz(data, jobs)).digest('hex'));
  assert.equal(digests.size, 1);
  const other = await gz(data, 2, 128 * 1024);
  assert.notEqual(createHash('sha256').update(other).digest('hex'), [...digests][0]);
  assert.notEqual(gzipSpec({ level: 6, blockSize: 65536 }), gzipSpec({ level: 6, blockSize: 131072 }));
});

test('edge sizes: empty input, one byte, an exact multiple of the block size', async () => {
  for (const n of [0, 1, 65536, 3 * 65536]) {
    const data = sample(n);
    assert.deepEqual(gunzipSync(await gz(data, 2)), data, `size ${n}`);
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
  const { gzipSync } = await import('node:zlib');
  const single = gzipSync(text, { level: 6 });
  assert.ok(parallel.length <= single.length * 1.02, `${parallel.length} vs ${single.length}`);
});
