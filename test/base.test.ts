import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { CacheStore } from '../src/cache/store.js';
import { KocacheError } from '../src/errors.js';
import { loadBase, type BaseImage } from '../src/image/base.js';
import { warmBase } from '../src/image/warm.js';
import type { BlobSource, PushableManifest } from '../src/oci/pushable.js';
import { sha256Digest } from '../src/oci/digest.js';
import type { ImageManifest } from '../src/oci/manifest.js';
import { MediaType } from '../src/oci/mediatypes.js';
import { parsePlatform } from '../src/oci/platform.js';
import { parseReference } from '../src/reference/reference.js';
import { RegistryClient } from '../src/remote/client.js';
import { pushImage } from '../src/remote/push.js';
import { tempDir } from './helpers/cli.js';
import { indexOf, memoryBlob, randomImage } from './helpers/images.js';
import { type RunningRegistry, skopeoPath, startRegistry } from './helpers/registry.js';

const amd64 = parsePlatform('linux/amd64');
const arm64 = parsePlatform('linux/arm64');

/** An image on top of a base, as publish assembles one: base layers + one new layer, config re-serialised. */
function imageOnBase(base: BaseImage): PushableManifest {
  const app = memoryBlob(Buffer.from(`app layer ${Math.random()}`));
  const config = { ...base.config, rootfs: { type: 'layers' as const, diff_ids: [...base.config.rootfs.diff_ids, app.descriptor.digest] } };
  const configBlob = memoryBlob(Buffer.from(JSON.stringify(config)), MediaType.OciConfig);
  const layers: BlobSource[] = [...base.layers, app];
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: configBlob.descriptor, layers: layers.map((l) => l.descriptor) };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { kind: 'manifest', bytes, descriptor: { mediaType: MediaType.OciManifest, digest: sha256Digest(bytes), size: bytes.length }, config: configBlob, layers };
}

async function rejectsWith(p: Promise<unknown>, re: RegExp): Promise<KocacheError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof KocacheError, `a KocacheError, not ${String(err)}`);
    assert.match(err.message, re);
    assert.ok(!err.message.includes('\n'), 'one line');
    return err;
  }
  assert.fail(`expected a rejection matching ${re}`);
}

describe('base images through the cache', () => {
  let regA: RunningRegistry;
  let regB: RunningRegistry;
  let aStopped = false;
  const dirs: string[] = [];
  let baseRef: string;
  let pushedIndex: ReturnType<typeof indexOf>;
  const newCache = () => {
    const d = tempDir('kocache-base-');
    dirs.push(d);
    return new CacheStore(d);
  };
  const newClient = (warnings: string[] = []) => new RegistryClient({ warn: (m) => warnings.push(m) });

  before(async () => {
    regA = await startRegistry();
    regB = await startRegistry();
    pushedIndex = indexOf([randomImage([200_000, 30_000], 'amd64'), randomImage([150_000], 'arm64')]);
    const client = newClient();
    await pushImage(client, parseReference(`${regA.host}/base:1`), pushedIndex);
    await client.close();
    baseRef = `${regA.host}/base:1`;
  });
  after(async () => {
    if (!aStopped) await regA.stop();
    await regB.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const warmCache = newCache();

  test('loadBase picks each platform from an index, layers open from the registry on a cold cache', async () => {
    const client = newClient();
    const cache = newCache();
    const bases = await loadBase(baseRef, [arm64, amd64], { client, cache });
    assert.deepEqual(bases.map((b) => b.platform), [arm64, amd64]);
    assert.deepEqual(bases[1]!.layers.map((l) => l.descriptor.digest), pushedIndex.manifests[0]!.layers.map((l) => l.descriptor.digest));
    assert.deepEqual(bases[0]!.layers.map((l) => l.descriptor.digest), pushedIndex.manifests[1]!.layers.map((l) => l.descriptor.digest));
    assert.equal(bases[0]!.manifestDescriptor?.digest, pushedIndex.manifests[1]!.descriptor.digest);
    assert.equal(bases[0]!.ref?.digest, pushedIndex.descriptor.digest);
    assert.deepEqual(bases[0]!.layers[0]!.origins, [{ registry: regA.host, repository: 'base' }]);
    assert.equal(bases[0]!.config.architecture, 'arm64');
    // The layer is not cached (loadBase fetches only manifests and configs), so it streams from A.
    const layer = bases[0]!.layers[0]!;
    assert.equal(await cache.blobSize(layer.descriptor.digest), undefined);
    const parts: Uint8Array[] = [];
    for await (const c of layer.open()) parts.push(c);
    assert.equal(sha256Digest(Buffer.concat(parts)), layer.descriptor.digest);
    // ...and is kept on the way through, with the record that keeps gc from calling it unreferenced.
    assert.equal(await cache.verifyBlob(layer.descriptor.digest, layer.descriptor.size), 'ok');
    assert.ok(await cache.getRecord(`img/${regA.host}/base/blob/${layer.descriptor.digest}`, (m): m is unknown => m !== undefined));
    // A consumer that stops early leaves nothing half-stored behind.
    const other = bases[1]!.layers[0]!;
    for await (const _ of other.open()) break;
    assert.equal(await cache.blobSize(other.descriptor.digest), undefined);
    await client.close();
  });

  test('warm fetches every platform, resumes, and a warm cache costs one manifest HEAD', async () => {
    const client = newClient();
    const first = await warmBase(baseRef, undefined, { client, cache: warmCache, jobs: 2 });
    assert.deepEqual(first.platforms, ['linux/amd64', 'linux/arm64']);
    assert.equal(first.layers, 3);
    assert.equal(first.fetched, 3);
    assert.equal(first.digest, pushedIndex.descriptor.digest);
    for (const m of pushedIndex.manifests) {
      for (const l of m.layers) assert.equal(await warmCache.verifyBlob(l.descriptor.digest, l.descriptor.size), 'ok');
    }
    // Resume: drop one layer and warm again; only that one is fetched.
    const dropped = pushedIndex.manifests[1]!.layers[0]!.descriptor;
    await warmCache.dropBlob(dropped.digest);
    const getsBefore = regA.requests('GET');
    const headsBefore = regA.requests('HEAD', /\/manifests\//);
    const second = await warmBase(baseRef, undefined, { client, cache: warmCache, jobs: 2 });
    assert.equal(second.fetched, 1);
    assert.equal(regA.requests('GET') - getsBefore, 1, 'one GET: the dropped layer');
    assert.equal(regA.requests('HEAD', /\/manifests\//) - headsBefore, 1);

    const gets = regA.requests('GET');
    const heads = regA.requests('HEAD');
    const bases = await loadBase(baseRef, [amd64, arm64], { client, cache: warmCache });
    for (const b of bases) for (const l of b.layers) for await (const _ of l.open()) { /* read from the cache */ }
    assert.equal(regA.requests('GET') - gets, 0, 'no manifest, config or layer GET with a warm cache');
    assert.equal(regA.requests('HEAD') - heads, 1, 'exactly one HEAD: the tag');
    await client.close();
  });

  test('a digest-pinned base with a warm cache needs no request at all', async () => {
    const client = newClient();
    const before = regA.log().length;
    const bases = await loadBase(`${regA.host}/base@${pushedIndex.descriptor.digest}`, [amd64], { client, cache: warmCache });
    assert.equal(bases[0]!.config.architecture, 'amd64');
    assert.doesNotMatch(regA.log().slice(before), /HTTP\/1\.1"/, 'no request reached the registry');
    await client.close();
  });

  test('--offline: an unwarmed base fails naming the reference; a warmed one works', async () => {
    const client = newClient();
    await rejectsWith(loadBase(baseRef, [amd64], { client, cache: newCache(), offline: true }), new RegExp(`${regA.host}/base:1 is not in the cache`));
    const before = regA.log().length;
    const bases = await loadBase(baseRef, [amd64], { client, cache: warmCache, offline: true });
    assert.equal(bases[0]!.layers.length, 2);
    assert.doesNotMatch(regA.log().slice(before), /HTTP\/1\.1"/);
    await client.close();
  });

  test('bad input: unknown reference, missing platform, bad reference', async () => {
    const client = newClient();
    await rejectsWith(loadBase(`${regA.host}/nothing-here:1`, [amd64], { client, cache: newCache() }), /not found/);
    await rejectsWith(loadBase(baseRef, [parsePlatform('linux/s390x')], { client, cache: newCache() }), /has no linux\/s390x image \(it has: linux\/amd64, linux\/arm64\)/);
    await rejectsWith(loadBase('Not A Ref', [amd64], { client, cache: newCache() }), /invalid image reference/);
    await client.close();
  });

  test('Docker v2 manifests are valid bases', async () => {
    const client = newClient();
    const layer = memoryBlob(Buffer.from('docker layer bytes'), MediaType.DockerLayerGzip);
    const config = memoryBlob(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.descriptor.digest] }, config: {} })), MediaType.DockerConfig);
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.DockerManifest, config: config.descriptor, layers: [layer.descriptor] }));
    const image: PushableManifest = { kind: 'manifest', bytes, descriptor: { mediaType: MediaType.DockerManifest, digest: sha256Digest(bytes), size: bytes.length }, config, layers: [layer] };
    await pushImage(client, parseReference(`${regA.host}/dockerbase:1`), image);
    const cache = newCache();
    const bases = await loadBase(`${regA.host}/dockerbase:1`, [amd64], { client, cache });
    assert.equal(bases[0]!.manifestDescriptor?.mediaType, MediaType.DockerManifest);
    assert.equal(bases[0]!.layers[0]!.descriptor.mediaType, MediaType.DockerLayerGzip);
    await rejectsWith(loadBase(`${regA.host}/dockerbase:1`, [arm64], { client, cache }), /is only for linux\/amd64, not linux\/arm64/);
    await client.close();
  });

  test('with the base registry down, a warmed base still publishes to another registry', async () => {
    await regA.stop();
    aStopped = true;
    const warnings: string[] = [];
    const client = newClient(warnings);
    await rejectsWith(loadBase(baseRef, [amd64], { client, cache: newCache() }), /cannot reach registry .*not in the cache/);
    const bases = await loadBase(baseRef, [amd64], { client, cache: warmCache, warn: (m) => warnings.push(m) });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, new RegExp(`cannot reach registry ${regA.host}.*using the cached ${regA.host}/base:1 \\(${pushedIndex.descriptor.digest}\\)`));
    const image = imageOnBase(bases[0]!);
    const result = await pushImage(client, parseReference(`${regB.host}/app:1`), image);
    assert.equal(result.uploaded, 4, 'two base layers from the cache, the app layer, the config');
    const raw = execFileSync(skopeoPath(), ['inspect', '--raw', '--tls-verify=false', `docker://${regB.host}/app:1`], { encoding: 'utf8' });
    assert.equal(sha256Digest(raw), image.descriptor.digest);
    // skopeo copy verifies every blob's digest as it downloads them.
    const out = tempDir('kocache-skopeo-');
    dirs.push(out);
    execFileSync(skopeoPath(), ['copy', '--quiet', '--src-tls-verify=false', `docker://${regB.host}/app:1`, `dir:${out}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    await client.close();
  });
});
