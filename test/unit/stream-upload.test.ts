import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Requester } from '../../src/remote/request.js';
import type { HttpResponse } from '../../src/remote/transport.js';
import { StreamedUpload } from '../../src/remote/upload.js';
import type { Digest } from '../../src/oci/digest.js';

// The writer side of a streamed upload, against a registry stand-in whose answers the test
// releases one by one: a registry that does not answer must hold the writer back after a few
// chunks (bounded memory), and one that refuses must never fail the writer.

interface Call { method: string; bytes: number; answer: (status: number) => void }

function standIn(): { rq: Requester; calls: Call[]; next: () => Promise<Call>; auto: (status: number) => void } {
  const calls: Call[] = [];
  let autoStatus: number | undefined;
  let waiting: ((c: Call) => void) | undefined;
  const res = (status: number): HttpResponse => ({
    status, url: 'http://r.test/v2/a/blobs/uploads/x', header: (n) => (n === 'location' ? '/v2/a/blobs/uploads/x' : undefined),
    headerAll: () => [], body: { dump: async () => undefined } as unknown as HttpResponse['body'],
  });
  const rq = {
    url: (_r: string, path: string) => `http://r.test${path}`,
    once: (call: { method: string; body?: Buffer }) => new Promise<HttpResponse>((resolve) => {
      const c: Call = { method: call.method, bytes: call.body?.length ?? 0, answer: (status) => resolve(res(status)) };
      calls.push(c);
      if (autoStatus !== undefined) return c.answer(call.method === 'PUT' ? 201 : autoStatus);
      const w = waiting;
      waiting = undefined;
      w?.(c);
    }),
    unexpected: async (r: HttpResponse) => new Error(`status ${r.status}`),
  } as unknown as Requester;
  const next = () => new Promise<Call>((resolve) => (waiting = resolve));
  const auto = (status: number) => {
    autoStatus = status;
    for (const c of calls) c.answer(status);
  };
  return { rq, calls, next, auto };
}

const DIGEST = `sha256:${'0'.repeat(64)}` as Digest;
const OPTS = { chunkThreshold: 16, chunkSize: 8 };
const tick = () => new Promise((r) => setImmediate(r));

test('a registry that does not answer holds the writer after a few chunks; answers let it go on', async () => {
  const { rq, calls, next, auto } = standIn();
  const up = new StreamedUpload(rq, { registry: 'r.test', repository: 'a' }, OPTS);
  let written = 0;
  // As the build writes: each write awaited when the sink asks for room.
  const writer = (async () => {
    for (let i = 0; i < 6; i++) {
      await up.write(Buffer.alloc(8, i));
      written++;
    }
  })();
  (await next()).answer(202);
  const firstPatch = await next();
  assert.equal(firstPatch.method, 'PATCH');
  for (let i = 0; i < 5; i++) await tick();
  // One chunk out, three queued; the writer waits with the fourth written.
  assert.equal(written, 3, 'held back while the registry is silent');
  // From now on the registry answers at once (201 to the closing PUT): the writer goes on, the rest goes up in order.
  auto(202);
  await writer;
  up.end({ digest: DIGEST, size: 48 });
  assert.deepEqual(await up.committed, { digest: DIGEST, size: 48 });
  assert.deepEqual(calls.map((c) => c.method), ['POST', 'PATCH', 'PATCH', 'PATCH', 'PATCH', 'PATCH', 'PATCH', 'PUT']);
  assert.deepEqual(calls.filter((c) => c.method === 'PATCH').map((c) => c.bytes), [8, 8, 8, 8, 8, 8]);
});

test('a refused PATCH ends the stream: the writer is let go, later bytes are ignored, nothing is committed', async () => {
  const { rq, next } = standIn();
  const up = new StreamedUpload(rq, { registry: 'r.test', repository: 'a' }, OPTS);
  const writer = (async () => {
    for (let i = 0; i < 6; i++) await up.write(Buffer.alloc(8, i));
  })();
  (await next()).answer(202);
  const patch = await next();
  const cleanup = next();
  patch.answer(500);
  await writer;
  assert.equal(up.write(Buffer.alloc(8)), undefined, 'a dropped stream never holds the writer');
  const del = await cleanup;
  assert.equal(del.method, 'DELETE', 'the session is given back');
  del.answer(202);
  up.end({ digest: DIGEST, size: 56 });
  assert.equal(await up.committed, undefined);
  assert.equal(up.alive, false);
});

test('a blob that ends below the threshold opens no session', async () => {
  const { rq, calls } = standIn();
  const up = new StreamedUpload(rq, { registry: 'r.test', repository: 'a' }, OPTS);
  assert.equal(up.write(Buffer.alloc(10)), undefined);
  up.end({ digest: DIGEST, size: 10 });
  assert.equal(await up.committed, undefined);
  assert.equal(calls.length, 0);
});
