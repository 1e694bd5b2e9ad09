import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { localHash, workerHash, type StreamHash } from '../../src/compress/streamhash.js';

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
  const hex = await h.digest();
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
  assert.equal(await h.digest(), createHash('sha256').digest('hex'));
  h.close();
});

test('a worker closed before its digest stops, and refuses more blocks', async () => {
  const h = workerHash();
  h.add(Buffer.from(new SharedArrayBuffer(16)), () => undefined);
  h.close();
  assert.throws(() => h.add(Buffer.from(new SharedArrayBuffer(16)), () => undefined), /closed/);
  await assert.rejects(h.digest(), /closed/);
});
