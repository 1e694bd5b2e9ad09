import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseReference } from '../src/reference/reference.js';
import { RegistryClient } from '../src/remote/client.js';
import { BlobPusher } from '../src/remote/blob-pusher.js';
import { pushImage } from '../src/remote/push.js';
import type { HeldSession } from '../src/remote/upload.js';
import { sha256Digest } from '../src/oci/digest.js';
import { CacheStore } from '../src/cache/store.js';
import type { BlobSource } from '../src/oci/pushable.js';
import { indexOf, memoryBlob, randomImage } from './helpers/images.js';
import { type RunningRegistry, skopeoPath, startRegistry } from './helpers/registry.js';

/** skopeo's view of a pushed tag: the raw manifest, and a copy whose every digest it verified. */
function skopeoRead(ref: string): { raw: string; files: string[] } {
  const raw = execFileSync(skopeoPath(), ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`], { encoding: 'utf8' });
  const out = mkdtempSync(join(tmpdir(), 'kocache-skopeo-'));
  try {
    execFileSync(skopeoPath(), ['copy', '--quiet', '--all', '--src-tls-verify=false', `docker://${ref}`, `dir:${out}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    return { raw, files: readdirSync(out) };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

describe('registry client against a real registry', () => {
  let reg: RunningRegistry;
  let client: RegistryClient;
  const warnings: string[] = [];
  before(async () => {
    reg = await startRegistry();
    client = new RegistryClient({ warn: (m) => warnings.push(m) });
  });
  after(async () => {
    await client.close();
    await reg.stop();
  });

  test('pushes an image that skopeo reads back, and a second push uploads nothing', async () => {
    const image = randomImage([300_000, 1_000, 70_000]);
    const target = parseReference(`${reg.host}/app:v1`);
    const result = await pushImage(client, target, image);
    assert.equal(result.digest, image.descriptor.digest);
    assert.equal(result.reference, `${reg.host}/app@${image.descriptor.digest}`);
    assert.deepEqual([result.uploaded, result.mounted, result.present], [4, 0, 0]);

    const { raw, files } = skopeoRead(`${reg.host}/app:v1`);
    assert.equal(sha256Digest(raw), image.descriptor.digest);
    for (const l of image.layers) assert.ok(files.includes(l.descriptor.digest.slice(7)), `skopeo copied layer ${l.descriptor.digest}`);

    const uploads = reg.uploadsStarted('app');
    const again = await pushImage(client, target, image);
    assert.deepEqual([again.uploaded, again.mounted, again.present], [0, 0, 4]);
    assert.equal(reg.uploadsStarted('app'), uploads, 'no upload session started on the second push');
  });

  test('a wrong hint costs a refused mount, then the HEAD: a blob the target holds is not sent again', async () => {
    const image = randomImage([40_000]);
    await pushImage(client, parseReference(`${reg.host}/held:v1`), image);
    const fresh = new RegistryClient();
    try {
      const layer: BlobSource = { ...image.layers[0]!, origins: [{ registry: reg.host, repository: 'never/had/it' }] };
      const puts = reg.requests('PUT', /^\/v2\/held\/blobs\/uploads\//);
      assert.equal(await fresh.pushBlob({ registry: reg.host, repository: 'held' }, layer), 'present');
      assert.ok(/POST \/v2\/held\/blobs\/uploads\/\?[^ ]*from=never/.test(reg.log()), 'the mount was asked for first');
      assert.equal(reg.requests('PUT', /^\/v2\/held\/blobs\/uploads\//), puts, 'no bytes sent');
    } finally {
      await fresh.close();
    }
  });

  test('a push to another repository of the same registry mounts instead of uploading', async () => {
    const image = randomImage([50_000, 60_000]);
    await pushImage(client, parseReference(`${reg.host}/first:v1`), image);
    const before = reg.uploadsStarted('second');
    const result = await pushImage(client, parseReference(`${reg.host}/second:v1`), image);
    assert.deepEqual([result.uploaded, result.mounted, result.present], [0, 3, 0]);
    assert.ok(/POST \/v2\/second\/blobs\/uploads\/\?[^ ]*mount=sha256/.test(reg.log()), 'the registry log shows mount=');
    assert.equal(reg.requests('PUT', /^\/v2\/second\/blobs\/uploads\//), 0, 'no blob bytes sent to the second repository');
    assert.equal(reg.requests('HEAD', /^\/v2\/second\/blobs\//), 0, 'a blob known in another repository is mounted with no HEAD before');
    assert.ok(reg.uploadsStarted('second') > before);
    skopeoRead(`${reg.host}/second:v1`);
  });

  test('a blob above the chunk threshold goes up in PATCH chunks and reads back intact', async () => {
    const image = randomImage([20 << 20]);
    const result = await pushImage(client, parseReference(`${reg.host}/big:v1`), image);
    assert.equal(result.uploaded, 2);
    assert.ok(reg.requests('PATCH', /^\/v2\/big\/blobs\/uploads\//) >= 3, 'chunked: at least three PATCH requests for 20 MiB');
    skopeoRead(`${reg.host}/big:v1`);
    // and the client's own read verifies it too
    const layer = image.layers[0]!;
    let n = 0;
    for await (const chunk of client.getBlob(parseReference(`${reg.host}/big`), layer.descriptor)) n += chunk.byteLength;
    assert.equal(n, layer.descriptor.size);
  });

  test('an index with two platforms: child manifests by digest, the index under the tag', async () => {
    const a = randomImage([10_000], 'amd64');
    const b = randomImage([10_000], 'arm64');
    const shared = memoryBlob(Buffer.from('shared layer bytes'));
    a.layers.push(shared);
    b.layers.push(shared);
    const index = indexOf([a, b]);
    const result = await pushImage(client, parseReference(`${reg.host}/multi:v2`), index);
    assert.equal(result.digest, index.descriptor.digest);
    assert.equal(result.uploaded, 5, 'the shared layer is pushed once');
    const { raw } = skopeoRead(`${reg.host}/multi:v2`);
    assert.equal(sha256Digest(raw), index.descriptor.digest);

    const got = await client.getManifest(parseReference(`${reg.host}/multi:v2`));
    assert.equal(got.descriptor.digest, index.descriptor.digest);
    assert.equal(got.descriptor.mediaType, 'application/vnd.oci.image.index.v1+json');
    const resolved = await client.resolve(parseReference(`${reg.host}/multi@${a.descriptor.digest}`));
    assert.deepEqual(resolved, a.descriptor);
  });

  test('resolve answers undefined for a missing tag; getManifest says manifest not found', async () => {
    assert.equal(await client.resolve(parseReference(`${reg.host}/app:nope`)), undefined);
    await assert.rejects(client.getManifest(parseReference(`${reg.host}/app:nope`)), {
      name: 'KocacheError',
      message: `${reg.host}/app:nope: manifest not found`,
    });
  });

  test('getBlob verifies: a descriptor with the wrong digest fails at the end of the stream', async () => {
    const image = randomImage([5_000]);
    await pushImage(client, parseReference(`${reg.host}/verify:v1`), image);
    const real = image.layers[0]!.descriptor;
    // The registry serves the real bytes; a descriptor claiming one byte fewer must not pass.
    await assert.rejects(async () => {
      for await (const _ of client.getBlob(parseReference(`${reg.host}/verify`), { ...real, size: real.size - 1 })) { /* drain */ }
    }, /digest mismatch/);
    assert.equal(await client.blobExists(parseReference(`${reg.host}/verify`), real.digest), true);
    assert.equal(await client.blobExists(parseReference(`${reg.host}/verify`), sha256Digest('absent')), false);
  });

  test('where blobs were seen is kept in the cache: a later run mounts into another repository', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kocache-seen-'));
    try {
      const image = randomImage([40_000]);
      const first = new RegistryClient({ cache: new CacheStore(dir) });
      await pushImage(first, parseReference(`${reg.host}/seen-a:v1`), image);
      await first.close();
      // A new client (a new process, as far as it knows) with the same cache.
      const second = new RegistryClient({ cache: new CacheStore(dir) });
      const result = await pushImage(second, parseReference(`${reg.host}/seen-b:v1`), image);
      await second.close();
      assert.deepEqual([result.uploaded, result.mounted], [0, 2]);
      // Without the cache nothing is known, so a third repository gets uploads.
      const third = new RegistryClient();
      const cold = await pushImage(third, parseReference(`${reg.host}/seen-c:v1`), image);
      await third.close();
      assert.deepEqual([cold.uploaded, cold.mounted], [2, 0]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a BlobSource naming an origin repository on the same registry is mounted from it', async () => {
    const image = randomImage([30_000]);
    await pushImage(client, parseReference(`${reg.host}/base:v1`), image);
    const fresh = new RegistryClient();
    try {
      const layer = image.layers[0]!;
      const withOrigin: BlobSource = { ...layer, open: layer.open, origins: [{ registry: 'elsewhere.example', repository: 'x' }, { registry: reg.host, repository: 'base' }] };
      assert.equal(await fresh.pushBlob(parseReference(`${reg.host}/derived`), withOrigin), 'mounted');
      assert.ok(reg.log().includes(`from=base`));
    } finally {
      await fresh.close();
    }
  });

  test('pushImage keeps at most `jobs` uploads in flight, asks about every blob at once, and reports progress to the total', async () => {
    /** Counts calls in flight, and the most at once. */
    const gauge = () => {
      const g = { now: 0, peak: 0, async track<T>(fn: () => Promise<T>): Promise<T> {
        g.now++;
        g.peak = Math.max(g.peak, g.now);
        try {
          return await fn();
        } finally {
          g.now--;
        }
      } };
      return g;
    };
    class CountingClient extends RegistryClient {
      readonly checks = gauge();
      readonly transfers = gauge();
      override pushBlob(...args: Parameters<RegistryClient['pushBlob']>) {
        return this.checks.track(() => super.pushBlob(...args));
      }
      protected override transferBlob(...args: Parameters<RegistryClient['transferBlob']>) {
        return this.transfers.track(() => super.transferBlob(...args));
      }
    }
    const counting = new CountingClient();
    try {
      const image = randomImage([1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 7_000]);
      const events: { done: number; total: number }[] = [];
      await pushImage(counting, parseReference(`${reg.host}/jobs:v1`), image, { jobs: 3, onProgress: (e) => events.push(e) });
      assert.equal(counting.transfers.peak, 3, 'uploads: at most jobs at once');
      assert.equal(counting.checks.peak, 8, 'all seven layers and the config asked about at once');
      assert.deepEqual(events.at(-1), { done: 9, total: 9 });
      assert.deepEqual(events[0], { done: 0, total: 9 });
    } finally {
      await counting.close();
    }
  });

  test('two images sharing layers pushed at the same time transfer each shared blob once', async () => {
    const a = randomImage([30_000, 40_000]);
    const b = randomImage([50_000]);
    b.layers.push(...a.layers);
    // (b's manifest bytes name only its own layer; pushImage pushes every blob it is given, which is what counts here.)
    const [ra, rb] = await Promise.all([
      pushImage(client, parseReference(`${reg.host}/together:a`), a),
      pushImage(client, parseReference(`${reg.host}/together:b`), b),
    ]);
    assert.equal(ra.uploaded + rb.uploaded, 5, 'two configs and three distinct layers, each uploaded once');
    assert.equal(ra.present + rb.present, 2, 'the shared layers count as present for the push that waited');
    assert.equal(reg.uploadsStarted('together'), 5);
  });
  test('a session opened ahead takes the config: one PUT, no HEAD or POST for it after the layers; one never taken is deleted', async () => {
    const image = randomImage([40_000]);
    const repo = parseReference(`${reg.host}/ahead`);
    const pusher = new BlobPusher(client, repo, 2);
    pusher.hold();
    const result = await pushImage(client, { ...repo, tag: 'v1' }, image, { pusher });
    await pusher.release();
    assert.deepEqual([result.uploaded, result.mounted, result.present], [2, 0, 0]);
    const config = image.config.descriptor.digest;
    assert.equal(reg.requests('HEAD', new RegExp(`^/v2/ahead/blobs/${config}`)), 0, 'no HEAD for the config');
    assert.equal(reg.uploadsStarted('ahead'), 2, 'the layer\'s session and the one opened ahead');
    assert.equal(reg.requests('DELETE', /^\/v2\/ahead\/blobs\/uploads\//), 0, 'the session was used');
    const { raw, files } = skopeoRead(`${reg.host}/ahead:v1`);
    assert.equal(sha256Digest(raw), image.descriptor.digest);
    assert.ok(files.includes(config.slice(7)));

    const unused = new BlobPusher(client, parseReference(`${reg.host}/ahead-unused`), 2);
    unused.hold();
    await unused.release();
    assert.equal(reg.uploadsStarted('ahead-unused'), 1);
    assert.equal(reg.requests('DELETE', /^\/v2\/ahead-unused\/blobs\/uploads\//), 1, 'the session no blob took is deleted');
  });

  test('a session opened ahead that the registry no longer knows: the blob goes up in a new one', async () => {
    const blob = memoryBlob(Buffer.from('{"config":"ahead"}'));
    const repo = parseReference(`${reg.host}/ahead-stale`);
    const stale = `http://${reg.host}/v2/ahead-stale/blobs/uploads/00000000-0000-4000-8000-000000000000?_state=x`;
    const held = { take: () => Promise.resolve(stale), release: async () => {} } as unknown as HeldSession;
    assert.equal(await client.pushBlob(repo, blob, undefined, held), 'uploaded');
    assert.equal(reg.requests('PUT', /^\/v2\/ahead-stale\/blobs\/uploads\/00000000-/), 1, 'the stale session was tried');
    assert.equal(reg.uploadsStarted('ahead-stale'), 1, 'then a new session');
    assert.equal(await client.blobSize(repo, blob.descriptor.digest), blob.descriptor.size);
  });
});

