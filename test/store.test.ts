import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import cacache from 'cacache';
import { KocacheError } from '../src/errors.js';
import { CacheStore, blobReadFailure } from '../src/cache/store.js';
import { type Digest, digestToIntegrity, sha256Digest } from '../src/oci/digest.js';
import { tempDir } from './helpers/cli.js';

async function* chunks(...parts: Buffer[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p;
}

/** Bytes, then a failure: a source that breaks mid-stream (an unreadable file, a dropped connection). */
async function* breaksAfter(part: Buffer, err: Error): AsyncGenerator<Uint8Array> {
  yield part;
  await new Promise((r) => setTimeout(r, 20)); // cacache has its temp file open by now
  throw err;
}

async function readAll(cache: CacheStore, digest: Digest, size?: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of cache.readBlob(digest, size)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

const tmpFiles = (dir: string) => (existsSync(join(dir, 'tmp')) ? readdirSync(join(dir, 'tmp')) : []);

describe('the cache store on cacache', () => {
  const dirs: string[] = [];
  const newStore = () => {
    const d = tempDir('kocache-store-');
    dirs.push(d);
    return new CacheStore(join(d, 'cache'));
  };
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test("a blob's path, digest and size are what cacache's own calls say", async () => {
    const cache = newStore();
    const bytes = randomBytes(300_000);
    const blob = await cache.writeBlob(chunks(bytes.subarray(0, 1000), bytes.subarray(1000)));
    assert.deepEqual(blob, { digest: sha256Digest(bytes), size: bytes.length });
    await cache.putRecord('test/one', blob, { n: 1 });
    const info = await cacache.get.info(cache.dir, 'test/one');
    assert.equal(info?.path, cache.blobPath(blob.digest));
    assert.equal(info?.integrity, digestToIntegrity(blob.digest));
    assert.deepEqual(await cacache.get.byDigest(cache.dir, digestToIntegrity(blob.digest)), bytes);
    assert.deepEqual(await readAll(cache, blob.digest, blob.size), bytes);
    assert.deepEqual((await cache.listRecords()).map((r) => r.key), ['test/one'], 'the journal is no record');
  });

  test('an empty blob is stored too', async () => {
    const cache = newStore();
    const blob = await cache.writeBlob(chunks());
    assert.deepEqual(blob, { digest: sha256Digest(''), size: 0 });
    assert.equal(await cache.checkBlob(blob.digest, 0), 'ok');
  });

  test('bytes that are not the expected ones store nothing and leave no temp file', async () => {
    const cache = newStore();
    const bytes = randomBytes(200_000);
    const other = sha256Digest('something else');
    await assert.rejects(cache.writeBlob(chunks(bytes), { digest: other }), (e: unknown) => e instanceof KocacheError && e.code === 'digest-mismatch');
    const right = sha256Digest(bytes);
    await assert.rejects(cache.writeBlob(chunks(bytes, bytes), { digest: right, size: bytes.length }), /not the expected size/);
    for (const d of [other, right]) assert.equal(await cacache.get.hasContent(cache.dir, digestToIntegrity(d)), false);
    assert.deepEqual(tmpFiles(cache.dir), []);
  });

  test("a source that fails mid-stream: its own error, nothing stored, cacache's temp file removed", async () => {
    const cache = newStore();
    const boom = new Error('the source broke');
    const part = randomBytes(100_000);
    await assert.rejects(cache.writeBlob(breaksAfter(part, boom)), (e: unknown) => e === boom);
    await assert.rejects(cache.writeBlob(breaksAfter(part, boom), { digest: sha256Digest(part) }), (e: unknown) => e === boom);
    assert.equal(await cacache.get.hasContent(cache.dir, digestToIntegrity(sha256Digest(part))), false);
    assert.deepEqual(tmpFiles(cache.dir), []);
  });

  test('a read that finds other bytes drops the blob; the right bytes at another size than asked stay', async () => {
    const cache = newStore();
    const bytes = randomBytes(50_000);
    const blob = await cache.writeBlob(chunks(bytes));
    for (const size of [bytes.length - 1, bytes.length + 1]) {
      const err = await readAll(cache, blob.digest, size).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof KocacheError && /wrong size/.test(err.message), String(err));
      assert.equal(blobReadFailure(err), 'corrupt');
      assert.equal(await cache.checkBlob(blob.digest), 'ok', 'kept');
    }
    const damaged = Buffer.from(bytes);
    damaged[100] = damaged[100]! ^ 0xff;
    writeFileSync(cache.blobPath(blob.digest), damaged);
    const err = await readAll(cache, blob.digest, bytes.length).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof KocacheError && /was corrupt/.test(err.message), String(err));
    assert.equal(existsSync(cache.blobPath(blob.digest)), false, 'dropped');
  });
});
