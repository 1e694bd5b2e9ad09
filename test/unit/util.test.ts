import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cacheFsError } from '../../src/cache/damage.js';
import { errnoHint } from '../../src/cli/hints.js';
import { sha256Digest } from '../../src/oci/digest.js';
import { Limiter } from '../../src/util/limit.js';
import { type Mismatch, describeMismatch, matches, verify } from '../../src/util/verify.js';

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield new TextEncoder().encode(p);
}

async function drain(source: AsyncIterable<Uint8Array>): Promise<string> {
  let s = '';
  for await (const c of source) s += Buffer.from(c).toString();
  return s;
}

test('verify passes matching bytes through unchanged', async () => {
  const want = { digest: sha256Digest('hello world'), size: 11 };
  assert.equal(await drain(verify(chunks('hello', ' ', 'world'), want, () => new Error('no'))), 'hello world');
  assert.equal(await matches(chunks('hello world'), want), true);
  assert.equal(await matches(chunks('hello world'), { digest: want.digest }), true, 'size is optional');
});

test('verify fails on wrong bytes, a short stream, and stops a long one at once', async () => {
  const want = { digest: sha256Digest('hello world'), size: 11 };
  const seen: Mismatch[] = [];
  const fail = (m: Mismatch) => {
    seen.push(m);
    return new Error(describeMismatch(m));
  };
  await assert.rejects(drain(verify(chunks('hello there'), want, fail)), /11 bytes hashing to sha256:[0-9a-f]{64} \(want 11 bytes\)/);
  assert.equal(seen.pop()?.reason, 'digest');
  await assert.rejects(drain(verify(chunks('hello'), want, fail)), /5 bytes hashing to/);
  assert.equal(seen.pop()?.reason, 'size');
  // An endless source: verify must stop as soon as it is past the size, not read on.
  let pulled = 0;
  async function* endless(): AsyncGenerator<Uint8Array> {
    for (;;) {
      pulled++;
      yield new Uint8Array(4);
    }
  }
  await assert.rejects(drain(verify(endless(), want, fail)), /more than 11 bytes/);
  assert.equal(pulled, 3);
  assert.equal(await matches(chunks('hello world!'), want), false);
});

test('Limiter never runs more than its size, even when a call arrives as a slot is handed on', async () => {
  const limit = new Limiter(2);
  let running = 0;
  let peak = 0;
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const counted = async (rest: () => Promise<void>) => {
    running++;
    peak = Math.max(peak, running);
    await gate;
    await rest();
    running--;
  };
  const quick = () => counted(async () => {});
  const slow = () => counted(() => new Promise((r) => setImmediate(r)));
  // Two finish in the same tick and hand their slots to the two waiting; a third call arrives
  // between the first hand-over and the waiters resuming (a limiter that frees the slot and then
  // wakes a waiter lets it in too: three at once).
  const all = [limit.run(quick), limit.run(quick), limit.run(slow), limit.run(slow)];
  all.push(all[0]!.then(() => limit.run(slow)));
  open();
  await Promise.all(all);
  assert.equal(peak, 2);
});

test('a full disk is advised once, whether or not the cache put words to it', () => {
  const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  const hint = errnoHint('ENOSPC', full.message);
  assert.match(hint ?? '', /^the disk is full: free some space, or shrink the cache with kocache gc --max-size SIZE$/);
  const worded = cacheFsError(full, '/c/content-v2', 'write a blob to');
  assert.match(worded.message, /no space left on the device; free some space/);
  assert.equal(errnoHint('ENOSPC', worded.message), undefined);
  assert.equal(errnoHint('EROFS', cacheFsError(Object.assign(new Error('x'), { code: 'EROFS' }), '/c', 'write').message), undefined);
  assert.equal(errnoHint('EROFS', 'cannot write /x'), 'the file system is read-only');
  assert.equal(errnoHint('ENOENT', 'cannot read /x'), undefined);
});

test('a dropped connection is retried; a request on a client this process closed is not', async () => {
  const { isRetryableNetworkError } = await import('../../src/remote/retry.js');
  const undici = await import('undici');
  assert.equal(isRetryableNetworkError(new undici.errors.SocketError('other side closed')), true);
  assert.equal(isRetryableNetworkError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })), true);
  assert.equal(isRetryableNetworkError(new undici.errors.ClientClosedError()), false);
  assert.equal(isRetryableNetworkError(new TypeError('fetch failed', { cause: new undici.errors.ClientClosedError() })), false);
});
