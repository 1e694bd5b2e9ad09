import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { CacheStore } from '../src/cache/store.js';
import type { Descriptor } from '../src/oci/descriptor.js';
import { type Digest, sha256Digest } from '../src/oci/digest.js';
import { MediaType } from '../src/oci/mediatypes.js';
import type { Reference } from '../src/reference/reference.js';
import { type CacheRepos, RegistryCache, type Target } from '../src/regcache/cache.js';
import { collectRegistryGarbage } from '../src/regcache/gc.js';
import {
  Annotation, RECORD_CONFIG, RECORD_MEDIA_TYPE, layerRecordManifest, parseLayerRecord, recordDay, recordKey, recordTag,
} from '../src/regcache/record.js';
import { RegistryClient } from '../src/remote/client.js';
import { DEFAULT_GZIP } from '../src/compress/options.js';
import { buildLayer } from '../src/layer/build.js';
import { parseLayerSource } from '../src/layer/source.js';
import type { LayerTier } from '../src/layer/tier.js';
import { tempDir } from './helpers/cli.js';
import { skopeo } from './helpers/image-fixtures.js';
import { htpasswdConfig, writeHtpasswd } from './helpers/htpasswd.js';
import { memoryBlob } from './helpers/images.js';
import { traceSnapshot } from '../src/util/trace.js';
import { type RunningRegistry, freePort, startRegistry } from './helpers/registry.js';

let reg: RunningRegistry;
let work: string;
let n = 0;

before(async () => {
  reg = await startRegistry();
  work = tempDir('kocache-regcache-');
});
after(async () => {
  await reg?.stop();
});

const repoOf = (repository: string, r = reg): Reference => ({ registry: r.host, repository });
const GZ = MediaType.OciLayerGzip;

function store(): CacheStore {
  return new CacheStore(join(work, `cache-${n++}`));
}

/** A layer in a local store: random bytes standing for a tar, gzipped; its diffid theirs. */
async function localLayer(cache: CacheStore, size = 4096): Promise<{ descriptor: Descriptor; diffid: Digest; bytes: Buffer }> {
  const tar = randomBytes(size);
  const bytes = gzipSync(tar);
  const blob = await cache.writeBlob((async function* () { yield bytes; })());
  return { descriptor: { mediaType: GZ, digest: blob.digest, size: blob.size }, diffid: sha256Digest(tar), bytes };
}

function regcache(repos: Partial<CacheRepos>, cache = store(), now?: () => number, dockerConfigDir?: string): { rc: RegistryCache; warnings: string[] } {
  const warnings: string[] = [];
  const rc = new RegistryCache({
    repos: { read: [], write: [], check: false, ...repos }, cache, jobs: 4, warn: (m) => warnings.push(m), ...(now ? { now } : {}),
    dockerConfigDir: dockerConfigDir ?? join(work, 'no-docker-config'),
  });
  return { rc, warnings };
}

/** Writes one layer record through a writer of its own, and returns what it wrote. */
async function writeRecord(cacheRepo: Reference, now?: () => number) {
  const cache = store();
  const layer = await localLayer(cache);
  const key = recordKey('layer', [`tree/fp:${randomBytes(8).toString('hex')}/tar-spec`, 'gzip-5']);
  const { rc, warnings } = regcache({ write: [cacheRepo] }, cache, now);
  rc.offerLayer({ key, descriptor: layer.descriptor, diffid: layer.diffid });
  await rc.close();
  assert.deepEqual(warnings, []);
  return { key, ...layer };
}

async function rawManifest(repo: Reference, tag: string): Promise<Record<string, unknown>> {
  return JSON.parse(await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${repo.registry}/${repo.repository}:${tag}`)) as Record<string, unknown>;
}

describe('registry cache records', () => {
  test('a layer record: one OCI manifest under kc1-<hash of key>, custom artifactType and config, the layer pinned; skopeo reads it', async () => {
    const cacheRepo = repoOf('rc/shape');
    const w = await writeRecord(cacheRepo);
    const tag = recordTag(w.key);
    assert.match(tag, /^kc1-[a-f0-9]{64}$/);
    const m = await rawManifest(cacheRepo, tag) as { mediaType: string; artifactType: string; config: Descriptor; layers: Descriptor[]; annotations: Record<string, string> };
    assert.equal(m.mediaType, MediaType.OciManifest);
    assert.equal(m.artifactType, RECORD_MEDIA_TYPE);
    assert.equal(m.config.mediaType, RECORD_MEDIA_TYPE);
    assert.deepEqual(m.layers, [w.descriptor]);
    assert.equal(m.annotations[Annotation.key], w.key);
    assert.equal(m.annotations[Annotation.diffid], w.diffid);
    assert.match(m.annotations[Annotation.created]!, /^\d{4}-\d\d-\d\dT00:00:00Z$/);
    // The pinned blob is the layer's very bytes, readable by an independent client.
    const dir = join(work, 'shape-dir');
    await skopeo('copy', '--quiet', '--src-tls-verify=false', `docker://${cacheRepo.registry}/${cacheRepo.repository}:${tag}`, `dir:${dir}`);
    const raw = JSON.stringify(await rawManifest(cacheRepo, tag));
    assert.ok(Buffer.byteLength(raw) < 2048, `a layer record is small (${Buffer.byteLength(raw)} bytes)`);
  });

  test('the same key, layer and day give the same bytes; a second writer sends nothing but one GET', async () => {
    const a = { key: 'k', descriptor: { mediaType: GZ, digest: sha256Digest('x'), size: 1 }, diffid: sha256Digest('y'), created: '2026-01-02T00:00:00Z' };
    assert.deepEqual(layerRecordManifest(a), layerRecordManifest({ ...a }));
    const cacheRepo = repoOf('rc/twice');
    const cache = store();
    const layer = await localLayer(cache);
    const key = recordKey('layer', ['twice', 'gzip-5']);
    const second = store();
    await second.writeBlob((async function* () { yield layer.bytes; })());
    for (let i = 0; i < 2; i++) {
      const { rc, warnings } = regcache({ write: [cacheRepo] }, i === 0 ? cache : second);
      const putsBefore = reg.requests('PUT', /\/v2\/rc\/twice\/manifests\//);
      rc.offerLayer({ key, descriptor: layer.descriptor, diffid: layer.diffid });
      await rc.close();
      assert.deepEqual(warnings, []);
      assert.equal(reg.requests('PUT', /\/v2\/rc\/twice\/manifests\//) - putsBefore, i === 0 ? 1 : 0, i === 0 ? 'the first writer puts the record' : 'a second writer of the same key on the same day puts nothing');
    }
  });

  test('a fresh reader finds it and mounts the blob into another repository of the same registry: no layer byte moves', async () => {
    const cacheRepo = repoOf('rc/mount-cache');
    const w = await writeRecord(cacheRepo);
    const target = repoOf('rc/mount-target');
    const settled: Promise<[string, string]>[] = [];
    const { rc, warnings } = regcache({ read: [cacheRepo] });
    const t: Target = { kind: 'registry', repo: target, settle: (d, o) => settled.push(Promise.resolve(o).then((x) => [d, x])) };
    const found = await rc.findLayer(w.key, GZ, t);
    assert.ok(found?.confirmed, 'answered before the blob was checked');
    assert.deepEqual(await Promise.all(settled), [[w.descriptor.digest, 'mounted']]);
    await rc.close();
    assert.deepEqual(warnings, []);
    assert.deepEqual(found?.record.descriptor, w.descriptor);
    assert.equal(found?.record.diffid, w.diffid);
    assert.equal(reg.requests('PUT', /\/v2\/rc\/mount-target\/blobs\/uploads/), 0, 'nothing uploaded to the target');
    assert.equal(reg.requests('PATCH', /\/v2\/rc\/mount-target\//), 0);
    assert.equal(reg.requests('GET', new RegExp(`/v2/rc/mount-cache/blobs/${w.descriptor.digest}`)), 0, 'the layer was never downloaded');
    const client = new RegistryClient();
    assert.equal(await client.blobSize(target, w.descriptor.digest), w.descriptor.size, 'the target holds the layer now');
    await client.close();
  });

  test('an answer given ahead whose blob is gone is withdrawn: its push fails, one warning, and it is not given again', async () => {
    const cacheRepo = repoOf('rc/ahead-cache');
    const w = await writeRecord(cacheRepo);
    const res = await fetch(`http://${reg.host}/v2/rc/ahead-cache/blobs/${w.descriptor.digest}`, { method: 'DELETE' });
    assert.equal(res.status, 202);
    const settled: Promise<unknown>[] = [];
    const { rc, warnings } = regcache({ read: [cacheRepo] });
    const t: Target = { kind: 'registry', repo: repoOf('rc/ahead-target'), settle: (_d, o) => settled.push(Promise.resolve(o)) };
    const found = await rc.findLayer(w.key, GZ, t);
    assert.deepEqual(found?.record.descriptor, w.descriptor, 'answered from the record alone');
    assert.equal(settled.length, 1);
    const err = await settled[0]!.then(() => undefined, (e: unknown) => e);
    assert.ok(rc.withdrew(err), `the push fails with a withdrawal: ${String(err)}`);
    assert.equal(await rc.findLayer(w.key, GZ, t), undefined, 'not answered again this run');
    assert.equal(settled.length, 1);
    await rc.close();
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0]!, /missing from/);
  });

  test('a second registry as the target: the layer is copied once, verified; a local target fetches it into the store', async () => {
    const other = await startRegistry();
    try {
      const cacheRepo = repoOf('rc/copy-cache');
      const w = await writeRecord(cacheRepo);
      const target: Reference = { registry: other.host, repository: 'copied/app' };
      const { rc, warnings } = regcache({ read: [cacheRepo] });
      const settled: Promise<string>[] = [];
      const found = await rc.findLayer(w.key, GZ, { kind: 'registry', repo: target, settle: (_d, o) => settled.push(Promise.resolve(o)) });
      assert.ok(found);
      assert.deepEqual(await Promise.all(settled), ['uploaded']);
      assert.equal(reg.requests('GET', new RegExp(`/v2/rc/copy-cache/blobs/${w.descriptor.digest}`)), 1, 'downloaded once');
      assert.equal(other.requests('PUT', /\/v2\/copied\/app\/blobs\/uploads/), 1, 'uploaded once');

      const local = store();
      const { rc: rc2 } = regcache({ read: [cacheRepo] }, local);
      const again = await rc2.findLayer(w.key, GZ, { kind: 'local' });
      await rc2.close();
      await rc.close();
      assert.ok(again);
      assert.equal(await local.checkBlob(w.descriptor.digest, w.descriptor.size), 'ok', 'the local store holds the verified layer');
      assert.deepEqual(warnings, []);
    } finally {
      await other.stop();
    }
  });

  test('records found remotely are kept locally: the next lookup sends no GET for the record', async () => {
    const cacheRepo = repoOf('rc/memo');
    const w = await writeRecord(cacheRepo);
    const cache = store();
    const tag = recordTag(w.key);
    const gets = () => reg.requests('GET', new RegExp(`/v2/rc/memo/manifests/${tag}`));
    const before = gets();
    const reads: number[] = [];
    for (let i = 0; i < 2; i++) {
      const read = traceSnapshot()['regcache.memo.read'] ?? 0;
      const { rc } = regcache({ read: [cacheRepo] }, cache);
      assert.ok(await rc.findLayer(w.key, GZ, { kind: 'none' }));
      await rc.close();
      reads.push((traceSnapshot()['regcache.memo.read'] ?? 0) - read);
    }
    assert.equal(gets() - before, 1, 'one GET of the record, by the first reader');
    // The first reader's cache had no memo of that repository: its index was not even read.
    assert.deepEqual(reads, [0, 1]);
  });

  test('a kept record whose blob is gone is dropped quietly and the registry asked again', async () => {
    const cacheRepo = repoOf('rc/stale');
    const w = await writeRecord(cacheRepo);
    const cache = store();
    const { rc } = regcache({ read: [cacheRepo] }, cache);
    assert.ok(await rc.findLayer(w.key, GZ, { kind: 'none' }));
    await rc.close();
    // The record is rewritten for another layer (a writer on a later day, after the old blob was collected).
    const res = await fetch(`http://${reg.host}/v2/rc/stale/blobs/${w.descriptor.digest}`, { method: 'DELETE' });
    assert.equal(res.status, 202);
    const fresh = store();
    const other = await localLayer(fresh);
    const { rc: writer } = regcache({ write: [cacheRepo] }, fresh, () => Date.now() + 86_400_000);
    writer.offerLayer({ key: w.key, descriptor: other.descriptor, diffid: other.diffid });
    await writer.close();
    const { rc: again, warnings } = regcache({ read: [cacheRepo] }, cache);
    const found = await again.findLayer(w.key, GZ, { kind: 'none' });
    await again.close();
    assert.deepEqual(found?.record.descriptor, other.descriptor);
    assert.deepEqual(warnings, []);
  });

  test('--cache-from only: a reader sends no PUT, POST or PATCH to the cache repository', async () => {
    const cacheRepo = repoOf('rc/readonly');
    const w = await writeRecord(cacheRepo);
    const before = ['PUT', 'POST', 'PATCH'].map((m) => reg.requests(m, /\/v2\/rc\/readonly\//));
    const cache = store();
    const layer = await localLayer(cache);
    const { rc, warnings } = regcache({ read: [cacheRepo] }, cache);
    assert.ok(await rc.findLayer(w.key, GZ, { kind: 'registry', repo: repoOf('rc/readonly-target') }));
    assert.equal(await rc.findLayer(recordKey('layer', ['absent']), GZ, { kind: 'local' }), undefined);
    rc.offerLayer({ key: recordKey('layer', ['new']), descriptor: layer.descriptor, diffid: layer.diffid });
    await rc.close();
    assert.deepEqual(warnings, []);
    assert.deepEqual(['PUT', 'POST', 'PATCH'].map((m) => reg.requests(m, /\/v2\/rc\/readonly\//)), before);
  });

  test('20 concurrent writers of distinct keys: all 20 records readable afterwards', async () => {
    const cacheRepo = repoOf('rc/concurrent');
    const writers = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const cache = store();
      const layer = await localLayer(cache, 2048 + i);
      return { cache, layer, key: recordKey('layer', [`concurrent-${i}`, 'gzip-5']) };
    }));
    const all = await Promise.all(writers.map(async (w) => {
      const { rc, warnings } = regcache({ write: [cacheRepo] }, w.cache);
      rc.offerLayer({ key: w.key, descriptor: w.layer.descriptor, diffid: w.layer.diffid });
      await rc.close();
      return warnings;
    }));
    assert.deepEqual(all.flat(), []);
    const { rc, warnings } = regcache({ read: [cacheRepo] });
    for (const w of writers) {
      const found = await rc.findLayer(w.key, GZ, { kind: 'none' });
      assert.deepEqual(found?.record.descriptor, w.layer.descriptor, `record ${w.key}`);
    }
    await rc.close();
    assert.deepEqual(warnings, []);
  });
});

describe('a broken registry cache is a miss with one warning', () => {
  const client = () => new RegistryClient();

  /** Puts `bytes` as a manifest under the record tag of `key`, blobs first. */
  async function plant(repo: Reference, key: string, manifest: object, blobs: Buffer[] = []): Promise<void> {
    const c = client();
    for (const b of blobs) await c.pushBlob(repo, memoryBlob(b));
    await c.pushBlob(repo, memoryBlob(Buffer.from('{"kocache":"record","version":1}'), RECORD_MEDIA_TYPE));
    await c.putManifest({ ...repo, tag: recordTag(key) }, Buffer.from(JSON.stringify(manifest)), MediaType.OciManifest);
    await c.close();
  }

  function record(key: string, layer: Descriptor, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      schemaVersion: 2, mediaType: MediaType.OciManifest, artifactType: RECORD_MEDIA_TYPE, config: RECORD_CONFIG, layers: [layer],
      annotations: { [Annotation.key]: key, [Annotation.kind]: 'layer', [Annotation.diffid]: sha256Digest('d'), [Annotation.created]: '2026-01-01T00:00:00Z' },
      ...extra,
    };
  }

  async function expectMiss(repos: Partial<CacheRepos>, key: string, why: RegExp, target: Target = { kind: 'registry', repo: repoOf('rc/broken-target') }, dockerConfigDir?: string): Promise<string> {
    const { rc, warnings } = regcache(repos, store(), undefined, dockerConfigDir);
    assert.equal(await rc.findLayer(key, GZ, target), undefined);
    // A second lookup in the same run does not warn again.
    assert.equal(await rc.findLayer(key, GZ, target), undefined);
    await rc.close();
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0]!, why);
    return warnings[0]!;
  }

  test('a manifest that is not a record (an ordinary image under the tag)', async () => {
    const repo = repoOf('rc/garbage');
    const bytes = randomBytes(100);
    const layer = { mediaType: GZ, digest: sha256Digest(bytes), size: bytes.length };
    const key = recordKey('layer', ['garbage']);
    const c = client();
    const cfg = Buffer.from('{}');
    await c.pushBlob(repo, memoryBlob(cfg, MediaType.OciConfig));
    await c.pushBlob(repo, memoryBlob(bytes));
    await c.putManifest({ ...repo, tag: recordTag(key) }, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: { mediaType: MediaType.OciConfig, digest: sha256Digest(cfg), size: 2 }, layers: [layer] })), MediaType.OciManifest);
    await c.close();
    await expectMiss({ read: [repo] }, key, /artifactType/);
  });

  test('a record whose key annotation is another key (a swapped tag)', async () => {
    const repo = repoOf('rc/swapped');
    const w = await writeRecord(repo);
    const key = recordKey('layer', ['the key asked for']);
    await plant(repo, key, record(w.key, w.descriptor));
    await expectMiss({ read: [repo] }, key, /key annotation/);
  });

  test('wrong layer media type, two layers, an absurd size', async () => {
    const repo = repoOf('rc/types');
    const bytes = randomBytes(64);
    const layer = { mediaType: GZ, digest: sha256Digest(bytes), size: bytes.length };
    const k1 = recordKey('layer', ['zstd']);
    await plant(repo, k1, record(k1, { ...layer, mediaType: MediaType.OciLayerZstd }), [bytes]);
    await expectMiss({ read: [repo] }, k1, /zstd/);
    const k2 = recordKey('layer', ['two']);
    await plant(repo, k2, { ...record(k2, layer), layers: [layer, layer] }, [bytes]);
    await expectMiss({ read: [repo] }, k2, /2 layers/);
    const k3 = recordKey('layer', ['absurd']);
    await plant(repo, k3, record(k3, { ...layer, size: 2 ** 50 }), [bytes]);
    await expectMiss({ read: [repo] }, k3, /absurd size/);
  });

  test('a blob of another size than the record says, and a blob gone from the cache repository', async () => {
    const repo = repoOf('rc/blobs');
    const bytes = randomBytes(64);
    const layer = { mediaType: GZ, digest: sha256Digest(bytes), size: bytes.length };
    const k1 = recordKey('layer', ['size']);
    await plant(repo, k1, record(k1, { ...layer, size: 65 }), [bytes]);
    await expectMiss({ read: [repo] }, k1, /64 bytes there, not 65/);
    const w = await writeRecord(repo);
    const res = await fetch(`http://${reg.host}/v2/rc/blobs/blobs/${w.descriptor.digest}`, { method: 'DELETE' });
    assert.equal(res.status, 202);
    await expectMiss({ read: [repo] }, w.key, /missing/);
    await expectMiss({ read: [repo] }, w.key, /missing/, { kind: 'local' });
  });

  test('a record naming a wrong diffid: a miss where the layer is kept locally (fetched or already there), nothing recorded', async () => {
    const repo = repoOf('rc/diffid');
    const w = await writeRecord(repo);
    const key = recordKey('layer', ['a wrong diffid']);
    // The blob is the real layer; only the diffid the record names (sha256 of "d") is wrong.
    await plant(repo, key, record(key, w.descriptor));
    const why = await expectMiss({ read: [repo] }, key, /unpacks to .* not the diffid sha256:18ac3e/, { kind: 'local' });
    assert.ok(why.includes(w.diffid), why);
    const kept = store();
    await kept.writeBlob((async function* () { yield w.bytes; })());
    const { rc, warnings } = regcache({ read: [repo] }, kept);
    assert.equal(await rc.findLayer(key, GZ, { kind: 'local' }), undefined);
    await rc.close();
    assert.match(warnings.join('\n'), /unpacks to/);
    assert.deepEqual((await kept.listRecords()).filter((r) => r.key.startsWith('regcache/')), [], 'no memo of the record');
    // The right record of the same blob is taken.
    const { rc: right, warnings: none } = regcache({ read: [repo] }, store());
    assert.equal((await right.findLayer(w.key, GZ, { kind: 'local' }))?.record.diffid, w.diffid);
    await right.close();
    assert.deepEqual(none, []);
  });

  test('a blob the cache registry serves with other bytes of the same size: a miss, nothing stored', async () => {
    const repo = repoOf('rc/flipped');
    const w = await writeRecord(repo);
    const hex = w.descriptor.digest.slice('sha256:'.length);
    const data = join(reg.root, 'data', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    const bytes = readFileSync(data);
    bytes[bytes.length >> 1]! ^= 0xff;
    writeFileSync(data, bytes);
    const local = store();
    const { rc, warnings } = regcache({ read: [repo] }, local);
    assert.equal(await rc.findLayer(w.key, GZ, { kind: 'local' }), undefined);
    await rc.close();
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0]!, /digest mismatch/);
    assert.equal(await local.blobSize(w.descriptor.digest), undefined, 'nothing stored under the digest');
  });

  test('a writer replaces a record it found broken this run, though it is dated today', async () => {
    const repo = repoOf('rc/diffid-rewrite');
    const w = await writeRecord(repo);
    const key = recordKey('layer', ['rewritten']);
    await plant(repo, key, record(key, w.descriptor, { annotations: { [Annotation.key]: key, [Annotation.kind]: 'layer', [Annotation.diffid]: sha256Digest('d'), [Annotation.created]: `${recordDay(Date.now())}` } }));
    const cache = store();
    await cache.writeBlob((async function* () { yield w.bytes; })());
    const { rc, warnings } = regcache({ read: [repo], write: [repo] }, cache);
    assert.equal(await rc.findLayer(key, GZ, { kind: 'local' }), undefined);
    rc.offerLayer({ key, descriptor: w.descriptor, diffid: w.diffid });
    await rc.close();
    assert.equal(warnings.length, 1, warnings.join('\n'));
    const { rc: reader, warnings: none } = regcache({ read: [repo] }, store());
    assert.equal((await reader.findLayer(key, GZ, { kind: 'local' }))?.record.diffid, w.diffid);
    await reader.close();
    assert.deepEqual(none, []);
  });

  test('a record whose layer does not unpack: a miss for a local target', async () => {
    const repo = repoOf('rc/unpack');
    const bytes = Buffer.concat([gzipSync(randomBytes(300)).subarray(0, 40), randomBytes(40)]);
    const layer = { mediaType: GZ, digest: sha256Digest(bytes), size: bytes.length };
    const key = recordKey('layer', ['no gzip']);
    await plant(repo, key, record(key, layer), [bytes]);
    await expectMiss({ read: [repo] }, key, /does not unpack/, { kind: 'local' });
  });

  test('an unreachable cache repository: one warning for the whole run, lookups after it skip it', async () => {
    const dead: Reference = { registry: `127.0.0.1:${await freePort()}`, repository: 'cache' };
    const { rc, warnings } = regcache({ read: [dead], write: [dead] });
    for (let i = 0; i < 3; i++) assert.equal(await rc.findLayer(recordKey('layer', [`k${i}`]), GZ, { kind: 'local' }), undefined);
    const cache = store();
    const layer = await localLayer(cache);
    rc.offerLayer({ key: recordKey('layer', ['w']), descriptor: layer.descriptor, diffid: layer.diffid });
    rc.offerLayer({ key: recordKey('layer', ['w2']), descriptor: layer.descriptor, diffid: layer.diffid });
    await rc.close();
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0]!, /not used: cannot reach registry .*connection refused/);
    // A repository that is only written to and fails: one warning too.
    const { rc: writer, warnings: w2 } = regcache({ write: [dead] });
    writer.offerLayer({ key: recordKey('layer', ['w']), descriptor: layer.descriptor, diffid: layer.diffid });
    writer.offerLayer({ key: recordKey('layer', ['w2']), descriptor: layer.descriptor, diffid: layer.diffid });
    await writer.close();
    assert.equal(w2.length, 1, w2.join('\n'));
    assert.match(w2[0]!, /could not write records .*the image is not affected/);
  });

  test('a cache repository that wants credentials (401): a miss, and no secret in the warning', async () => {
    const root = tempDir('kocache-regcache-auth-');
    writeHtpasswd(join(root, 'htpasswd'), { ci: 's3cret-pass' });
    const locked = await startRegistry({ extraConfig: htpasswdConfig(join(root, 'htpasswd')) });
    try {
      const repo: Reference = { registry: locked.host, repository: 'cache' };
      await expectMiss({ read: [repo] }, recordKey('layer', ['auth']), /none are configured/, { kind: 'local' });
      const config = join(root, 'docker');
      mkdirSync(config);
      writeFileSync(join(config, 'config.json'), JSON.stringify({ auths: { [locked.host]: { auth: Buffer.from('ci:wr0ng-secret').toString('base64') } } }));
      const w = await expectMiss({ read: [repo] }, recordKey('layer', ['auth']), /rejected/, { kind: 'local' }, config);
      assert.ok(!w.includes('wr0ng-secret') && !w.includes(Buffer.from('ci:wr0ng-secret').toString('base64')), w);
    } finally {
      await locked.stop();
    }
  });

  test('records of the previous day are written again by a writer (gc --max-age goes by that day)', async () => {
    const repo = repoOf('rc/refresh');
    const day = 86_400_000;
    const cache = store();
    const layer = await localLayer(cache);
    const key = recordKey('layer', ['refresh']);
    const t0 = Date.parse('2026-03-01T12:00:00Z');
    for (const t of [t0, t0 + 3600_000, t0 + day]) {
      const { rc } = regcache({ write: [repo] }, cache, () => t);
      rc.offerLayer({ key, descriptor: layer.descriptor, diffid: layer.diffid });
      await rc.close();
    }
    assert.equal(reg.requests('PUT', /\/v2\/rc\/refresh\/manifests\//), 2, 'written on day 1 and again on day 2, not twice on day 1');
    const m = await rawManifest(repo, recordTag(key)) as { annotations: Record<string, string> };
    assert.equal(m.annotations[Annotation.created], '2026-03-02T00:00:00Z');
    assert.equal(parseLayerRecord(Buffer.from(JSON.stringify(m)), key, GZ).created, '2026-03-02T00:00:00Z');
  });
});

describe('gc of a registry cache', () => {
  test('--max-age: records older than it deleted by digest, newer kept, images in the repository untouched', async () => {
    const repo = repoOf('rc/gc');
    const day = 86_400_000;
    const old = await Promise.all([0, 1].map(() => writeRecord(repo, () => Date.now() - 40 * day)));
    const fresh = await writeRecord(repo);
    const c = new RegistryClient();
    // An app image in the same repository: gc reads only kc1- tags.
    const app = memoryBlob(randomBytes(100));
    await c.pushBlob(repo, app);
    const cfg = memoryBlob(Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'), MediaType.OciConfig);
    await c.pushBlob(repo, cfg);
    await c.putManifest({ ...repo, tag: 'v1' }, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: cfg.descriptor, layers: [app.descriptor] })), MediaType.OciManifest);

    const dry = await collectRegistryGarbage(c, repo, { maxAgeMs: 30 * day, dryRun: true });
    assert.equal(dry.records, 3);
    assert.deepEqual(dry.expired.map((e) => e.tag).sort(), old.map((o) => recordTag(o.key)).sort());
    assert.equal(dry.deleted, 0);
    assert.equal(reg.requests('DELETE', /\/v2\/rc\/gc\/manifests\//), 0, '--dry-run deletes nothing');

    const report = await collectRegistryGarbage(c, repo, { maxAgeMs: 30 * day });
    assert.equal(report.deleted, 2);
    const tags = await c.listTags(repo);
    assert.deepEqual(tags.sort(), [recordTag(fresh.key), 'v1'].sort());
    await skopeo('copy', '--quiet', '--src-tls-verify=false', `docker://${repo.registry}/${repo.repository}:v1`, `dir:${join(work, 'gc-app')}`);
    await c.close();
    const { rc, warnings } = regcache({ read: [repo] });
    assert.equal(await rc.findLayer(old[0]!.key, GZ, { kind: 'none' }), undefined, 'a deleted record is a plain miss');
    assert.ok(await rc.findLayer(fresh.key, GZ, { kind: 'none' }));
    await rc.close();
    assert.deepEqual(warnings, []);
  });

  test('--max-age under a day: a record counts as written at the end of its day, so none younger than the age goes', async () => {
    const repo = repoOf('rc/gc-hours');
    const day = 86_400_000;
    const hour = 3_600_000;
    const now = Date.now();
    await writeRecord(repo, () => now);
    const c = new RegistryClient();
    for (const maxAgeMs of [1, 90 * 60_000, 12 * hour]) {
      const r = await collectRegistryGarbage(c, repo, { maxAgeMs, dryRun: true, now });
      assert.deepEqual(r.expired, [], `a record written today is kept with --max-age ${maxAgeMs} ms`);
    }
    // Its day ended 11 hours ago, then 13: kept, then gone, at 12h.
    const dayEnd = Date.parse(recordDay(now)) + day;
    assert.equal((await collectRegistryGarbage(c, repo, { maxAgeMs: 12 * hour, dryRun: true, now: dayEnd + 11 * hour })).expired.length, 0);
    assert.equal((await collectRegistryGarbage(c, repo, { maxAgeMs: 12 * hour, dryRun: true, now: dayEnd + 13 * hour })).expired.length, 1);
    await c.close();
  });

  test('a registry that refuses deletes is reported as such', async () => {
    const noDelete = await startRegistry({ deletes: false });
    try {
      const repo: Reference = { registry: noDelete.host, repository: 'rc/nodelete' };
      await writeRecord(repo, () => Date.now() - 10 * 86_400_000);
      const c = new RegistryClient();
      const report = await collectRegistryGarbage(c, repo, { maxAgeMs: 86_400_000 });
      await c.close();
      assert.equal(report.expired.length, 1);
      assert.equal(report.deleted, 0);
      assert.equal(report.deletesDisabled, true);
    } finally {
      await noDelete.stop();
    }
  });
});

describe('the layer builder asks the registry cache', () => {
  test('with the media type its compression gives (zstd layers are looked up as zstd), and takes the answer without building', async () => {
    const cache = store();
    const dir = join(work, 'zstd-src');
    mkdirSync(dir);
    writeFileSync(join(dir, 'f'), 'x');
    const answer = { descriptor: { mediaType: MediaType.OciLayerZstd, digest: sha256Digest('z'), size: 9 }, diffid: sha256Digest('d') };
    const asked: string[] = [];
    const tier: LayerTier = {
      check: false,
      find: async (_key, compression, mediaType) => {
        asked.push(`${compression} ${mediaType}`);
        return answer;
      },
      offer: () => {},
    };
    const r = await buildLayer(parseLayerSource(`${dir}:/app`), {
      cache, importPath: 'example.com/z', platform: { os: 'linux', architecture: 'amd64' }, gzip: { ...DEFAULT_GZIP, algorithm: 'zstd', level: 3 }, tier,
    });
    assert.equal(asked.length, 1);
    assert.match(asked[0]!, / application\/vnd\.oci\.image\.layer\.v1\.tar\+zstd$/);
    assert.deepEqual([r.descriptor, r.remote, r.cached], [answer.descriptor, true, true]);
  });
});
