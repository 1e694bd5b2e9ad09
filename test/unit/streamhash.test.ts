import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlockPool } from '../../src/compress/blockpool.js';
import { BLOCK_CAPACITY } from '../../src/compress/cuts.js';
import { blockKey } from '../../src/compress/gzip.js';
import { blockKeySpec } from '../../src/compress/options.js';
import { localHash, workerHash, type StreamHash } from '../../src/compress/streamhash.js';
import { tarBlocks } from '../../src/layer/tar.js';
import { walkSource } from '../../src/layer/walk.js';
import { tempDir } from '../helpers/cli.js';

/**
 * Feeds `count` blocks through `h`, each written into a buffer handed back by an earlier block's
 * `done` when there is one: a `done` that came before the hash had read its block would let the
 * next block overwrite it, and the digest would differ from the one-thread hash of the same bytes.
 */
async function feed(h: StreamHash, count: number): Promise<{ hex: string; want: string; done: number; buffers: number }> {
  const want = createHash('sha256');
  const free: Buffer[] = [];
  let done = 0;
  let buffers = 0;
  for (let i = 0; i < count; i++) {
    const size = 1000 + ((i * 7919) % 60_000);
    let block: Buffer;
    if (i % 97 === 5) {
      block = Buffer.alloc(size); // not shared memory: copied for the worker
    } else {
      const buf = free.pop() ?? (buffers++, h.shared ? Buffer.from(new SharedArrayBuffer(64 * 1024)) : Buffer.alloc(64 * 1024));
      block = buf.subarray(0, size);
    }
    block.fill(i & 0xff);
    block.writeUInt32BE(i, 0);
    want.update(block);
    h.add(block, () => {
      done++;
      if (block.byteOffset === 0 && block.buffer.byteLength === 64 * 1024) free.push(Buffer.from(block.buffer, 0, 64 * 1024));
    });
    // Now and then let the worker get ahead, so buffers come back and are written over.
    if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
  }
  const { hex } = await h.digest();
  h.close();
  return { hex, want: want.digest('hex'), done, buffers };
}

test('the worker hashes shared blocks to the one-thread digest and hands each back once read', async () => {
  // More blocks than the ring holds, so it wraps and the producer may wait for room.
  const r = await feed(workerHash(), 700);
  assert.equal(r.hex, r.want);
  assert.equal(r.done, 700, 'every block handed back by the time the digest is known');
  assert.ok(r.buffers < 700, 'buffers were handed back and filled again before the end');
  const local = await feed(localHash(), 700);
  assert.equal(local.hex, r.want);
});

test('the worker hashes an empty stream', async () => {
  const h = workerHash();
  assert.equal((await h.digest()).hex, createHash('sha256').digest('hex'));
  h.close();
});

test('a worker closed before its digest stops, and refuses more blocks', async () => {
  const h = workerHash();
  h.add(Buffer.from(new SharedArrayBuffer(16)), () => undefined);
  h.close();
  assert.throws(() => h.add(Buffer.from(new SharedArrayBuffer(16)), () => undefined), /closed/);
  await assert.rejects(h.digest(), /closed/);
});

test("with files, the worker hashes each regular file's data as the tar carries it, in order", async () => {
  const root = join(tempDir(), 'src');
  const long = `${'d'.repeat(90)}/${'n'.repeat(120)}`; // past ustar's 100 bytes: a PAX record
  mkdirSync(join(root, long.split('/')[0]!), { recursive: true });
  mkdirSync(join(root, 'sub'), { recursive: true });
  writeFileSync(join(root, 'empty'), '');
  writeFileSync(join(root, long), 'long name\n');
  writeFileSync(join(root, 'sub', 'caf\u00e9-\u6f22.txt'), 'not ascii\n');
  // Over several blocks (big entries are cut every MiB of their data), padding at the end.
  const big = Buffer.alloc(3 * 1024 * 1024 + 77);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
  writeFileSync(join(root, 'sub', 'big.bin'), big);
  for (let i = 0; i < 300; i++) writeFileSync(join(root, 'sub', `f${i}`), 'x'.repeat(i * 37));
  symlinkSync('sub/f1', join(root, 'link'));
  const entries = walkSource(root);
  const files = entries.filter((e) => e.type === 'file');
  const h = workerHash({ files: true });
  const tar = createHash('sha256');
  let blocks = 0;
  for (const block of tarBlocks(entries, { dest: '/app', mtime: 0 }, undefined, undefined, new BlockPool(BLOCK_CAPACITY, 4, true))) {
    tar.update(block);
    h.add(block, () => undefined);
    blocks++;
  }
  const d = await h.digest();
  h.close();
  assert.ok(blocks > 3, 'the tar spans several blocks');
  assert.equal(d.hex, tar.digest('hex'));
  assert.deepEqual([...d.files!.sizes], files.map((e) => e.size));
  const want = files.map((e) => createHash('sha256').update(readFileSync(e.abs)).digest('hex')).join('');
  assert.equal(d.files!.hashes, want);
});

test("with keys, the worker gives each block gzip's own block key (dictionary carried across small and empty blocks)", async () => {
  const spec = blockKeySpec({ level: 5 });
  const h = workerHash({ keys: spec });
  const sizes = [100_000, 5, 0, 20_000, 40_000, 1, 32 * 1024, 70_000, 0, 3];
  const keys: Promise<Buffer>[] = [];
  const want: Buffer[] = [];
  let dictionary = Buffer.alloc(0);
  sizes.forEach((n, i) => {
    const block = Buffer.from(new SharedArrayBuffer(Math.max(n, 1))).subarray(0, n);
    for (let j = 0; j < n; j++) block[j] = (i * 31 + j * 7) & 0xff;
    want.push(blockKey(spec, dictionary, block));
    if (n > 0) dictionary = Buffer.concat([dictionary, block]).subarray(-32 * 1024);
    keys.push(h.add(block, () => undefined)!);
  });
  const got = await Promise.all(keys);
  await h.digest();
  h.close();
  assert.deepEqual(got.map((k) => k.toString('hex')), want.map((k) => k.toString('hex')));
  assert.equal(new Set(want.map((k) => k.toString('hex'))).size, sizes.length, 'the keys differ from block to block');
});

test('with blob, the worker also hashes a second stream of chunks, copied into its shared memory and written over', async () => {
  const h = workerHash({ blob: true });
  const tar = createHash('sha256');
  const blob = createHash('sha256');
  let handed = 0;
  // Chunks of every size up to past the whole shared area (8 MiB), each changed after it is added
  // (the caller may reuse it): the worker must hash the bytes as they were.
  for (let i = 0; i < 40; i++) {
    const block = Buffer.from(new SharedArrayBuffer(64 * 1024));
    block.fill(i);
    tar.update(block);
    h.add(block, () => handed++);
    const chunk = Buffer.alloc(i === 20 ? 9 * 1024 * 1024 + 3 : 1 + ((i * 104_729) % (1536 * 1024)));
    for (let j = 0; j < chunk.length; j += 1024) chunk[j] = (i + j) & 0xff;
    blob.update(chunk);
    await h.blob!.add(chunk);
    chunk.fill(0xee);
  }
  const blobHex = await h.blob!.end();
  const d = await h.digest();
  h.close();
  assert.equal(blobHex, blob.digest('hex'));
  assert.equal(d.hex, tar.digest('hex'));
  assert.equal(handed, 40);
});
