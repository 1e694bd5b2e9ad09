import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CacheStore } from '../src/cache/store.js';
import { KocacheError } from '../src/errors.js';
import { assembleIndex, assembleManifest, historyLine, ociLayerMediaType } from '../src/image/assemble.js';
import { bytesBlob } from '../src/image/blobs.js';
import { buildConfig, createdTime, imagePlatform } from '../src/image/config.js';
import { expandPlaceholders, layerSpecsFor } from '../src/image/sources.js';
import { parseCommand, parseKeyValue, parseOutput, parseRepo } from '../src/cli/publish-options.js';
import type { ImageConfig, ImageIndex, ImageManifest } from '../src/oci/manifest.js';
import { MediaType } from '../src/oci/mediatypes.js';
import { sha256Digest } from '../src/oci/digest.js';
import { tempDir } from './helpers/cli.js';

const D1 = sha256Digest('one');
const D2 = sha256Digest('two');
const D3 = sha256Digest('three');

function baseConfig(): ImageConfig {
  // Keys deliberately out of the usual order, plus a field kocache does not know.
  return JSON.parse(JSON.stringify({
    architecture: 'arm64',
    variant: 'v8',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: [D1] },
    config: { Env: ['PATH=/usr/bin', 'HOME=/root'], Cmd: ['/bin/sh'], Labels: { a: '1' } },
    history: [{ created: '2020-01-01T00:00:00Z', created_by: 'base layer' }],
    created: '2020-01-01T00:00:00Z',
    'moby.buildkit.buildinfo.v1': 'xyz',
  })) as ImageConfig;
}

test('config keeps the base, appends layers and history, applies overrides', () => {
  const c = buildConfig(
    baseConfig(),
    { os: 'linux', architecture: 'arm64' },
    [{ diffid: D2, createdBy: 'kocache publish a:/a' }, { diffid: D3, createdBy: 'kocache publish b:/b' }],
    { env: [['PATH', '/app:/usr/bin'], ['NEW', 'x=y']], entrypoint: ['/app'], labels: [['b', '2'], ['a', 'over']], workdir: '/w', user: '65532' },
    '1970-01-01T00:00:00Z',
  );
  assert.deepEqual(c.rootfs.diff_ids, [D1, D2, D3]);
  assert.deepEqual(c.history, [
    { created: '2020-01-01T00:00:00Z', created_by: 'base layer' },
    { created: '1970-01-01T00:00:00Z', created_by: 'kocache publish a:/a' },
    { created: '1970-01-01T00:00:00Z', created_by: 'kocache publish b:/b' },
  ]);
  assert.equal(c.created, '1970-01-01T00:00:00Z');
  assert.equal(c.variant, 'v8', 'the base says which arm64 variant it is');
  assert.deepEqual(c.config?.Env, ['PATH=/app:/usr/bin', 'HOME=/root', 'NEW=x=y'], 'PATH replaced where it stood');
  assert.deepEqual(c.config?.Entrypoint, ['/app']);
  assert.equal(c.config?.Cmd, undefined, "a new entrypoint drops the base's cmd, as Docker does");
  assert.deepEqual(c.config?.Labels, { a: 'over', b: '2' });
  assert.equal(c.config?.WorkingDir, '/w');
  assert.equal(c.config?.User, '65532');
  assert.equal(c['moby.buildkit.buildinfo.v1'], 'xyz', 'unknown fields are kept');
  assert.deepEqual(Object.keys(c), ['created', 'architecture', 'os', 'variant', 'config', 'rootfs', 'history', 'moby.buildkit.buildinfo.v1']);
});

test('an explicit --cmd survives a new entrypoint; no overrides leaves the container config alone', () => {
  const c = buildConfig(baseConfig(), { os: 'linux', architecture: 'arm64' }, [], { entrypoint: ['/app'], cmd: ['--serve'] }, 'T');
  assert.deepEqual(c.config?.Cmd, ['--serve']);
  const same = buildConfig(baseConfig(), { os: 'linux', architecture: 'arm64' }, [], {}, 'T');
  assert.deepEqual(same.config, baseConfig().config);
});

test('platform and created time', () => {
  assert.deepEqual(imagePlatform({ os: 'linux', architecture: 'arm64' }, baseConfig()), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  assert.equal(createdTime(0), '1970-01-01T00:00:00Z');
  assert.equal(createdTime(1700000000), '2023-11-14T22:13:20Z');
});

test('flag parsing: KEY=VALUE, commands, outputs, repos', () => {
  assert.deepEqual(parseKeyValue('A=b=c', 'env'), ['A', 'b=c']);
  assert.deepEqual(parseKeyValue('A=', 'env'), ['A', '']);
  for (const bad of ['=x', 'noequals', 'A B=c']) {
    assert.throws(() => parseKeyValue(bad, 'env'), (e: unknown) => e instanceof KocacheError && /--env/.test(e.message));
  }
  assert.deepEqual(parseCommand('/usr/local/bin/my app', 'entrypoint'), ['/usr/local/bin/my app']);
  assert.deepEqual(parseCommand('["/app","--x"]', 'entrypoint'), ['/app', '--x']);
  assert.deepEqual(parseCommand('[]', 'cmd'), []);
  assert.throws(() => parseCommand('[1,2]', 'cmd'), KocacheError);
  assert.throws(() => parseCommand('["a"', 'cmd'), KocacheError);
  assert.throws(() => parseCommand('', 'cmd'), KocacheError);

  assert.deepEqual(parseOutput(undefined), { kind: 'registry' });
  assert.deepEqual(parseOutput('oci:out', '/w'), { kind: 'oci', path: '/w/out' });
  assert.deepEqual(parseOutput('docker-archive:/x/a.tar'), { kind: 'docker-archive', path: '/x/a.tar' });
  assert.throws(() => parseOutput('tarball:x'), /unknown --output kind "tarball"/);
  assert.throws(() => parseOutput('oci:'), /needs a path/);
  assert.throws(() => parseRepo(`r.io/a@${D1}`), /digest/);
  assert.deepEqual(parseRepo('r.io/a/b'), { registry: 'r.io', repository: 'a/b', tag: 'latest' });
});

test('placeholders expand per platform; unknown ones and missing sources fail', () => {
  const arm = { os: 'linux', architecture: 'arm', variant: 'v7' };
  assert.equal(expandPlaceholders('out/{os}-{arch}{variant}/{platform}:/app', arm), 'out/linux-armv7/linux_arm_v7:/app');
  assert.equal(expandPlaceholders('{platform}', { os: 'linux', architecture: 'amd64' }), 'linux_amd64');
  assert.throws(() => expandPlaceholders('out/{goarch}', arm), /unknown placeholder \{goarch\}/);
  const dir = tempDir();
  mkdirSync(join(dir, 'amd64'));
  writeFileSync(join(dir, 'amd64', 'app'), 'x');
  const specs = layerSpecsFor(['{arch}/app:/bin/app'], { os: 'linux', architecture: 'amd64' }, dir);
  assert.deepEqual(specs, [{ spec: 'amd64/app:/bin/app', source: { src: join(dir, 'amd64', 'app'), dest: '/bin/app' } }]);
  assert.throws(() => layerSpecsFor(['{arch}/app:/bin/app'], { os: 'linux', architecture: 'arm64' }, dir), /arm64\/app.*no such file/);
});

test('assembly: Docker layer types become OCI ones, bytes are deterministic, index carries platforms', async () => {
  const cache = new CacheStore(tempDir());
  const dockerLayer = bytesBlob(MediaType.DockerLayerGzip, Buffer.from('base layer bytes'));
  const base = {
    ref: { registry: 'r.io', repository: 'base', tag: '1', digest: D3 },
    platform: { os: 'linux', architecture: 'amd64' },
    manifestDescriptor: { mediaType: MediaType.DockerManifest, digest: D3, size: 10 },
    config: { ...baseConfig(), architecture: 'amd64' },
    layers: [dockerLayer],
  };
  delete base.config.variant;
  const layer = { descriptor: { mediaType: MediaType.OciLayerGzip, digest: D2, size: 5 }, diffid: D1, spec: 'app:/app', dest: '/app' };
  const opts = { base, platform: { os: 'linux', architecture: 'amd64' }, layers: [layer], overrides: {}, created: '1970-01-01T00:00:00Z', cache };
  const a = assembleManifest(opts);
  const b = assembleManifest(opts);
  assert.equal(a.bytes.toString(), b.bytes.toString());
  assert.equal(a.descriptor.digest, sha256Digest(a.bytes));
  assert.ok(!/\s/.test(a.bytes.toString()), 'no white space');
  const m = JSON.parse(a.bytes.toString()) as ImageManifest;
  assert.equal(m.mediaType, MediaType.OciManifest);
  assert.equal(m.config.mediaType, MediaType.OciConfig);
  assert.deepEqual(m.layers.map((l) => l.mediaType), [MediaType.OciLayerGzip, MediaType.OciLayerGzip]);
  assert.equal(m.layers[0]!.digest, dockerLayer.descriptor.digest, 'same bytes, new name');
  assert.deepEqual(m.annotations, { 'org.opencontainers.image.base.digest': D3, 'org.opencontainers.image.base.name': 'r.io/base:1' });
  assert.equal(ociLayerMediaType(MediaType.DockerForeignLayerGzip), 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip');

  const arm = assembleManifest({ ...opts, platform: { os: 'linux', architecture: 'arm64' } });
  const idx = assembleIndex([{ image: a, platform: { os: 'linux', architecture: 'amd64' } }, { image: arm, platform: { os: 'linux', architecture: 'arm64' } }]);
  const parsed = JSON.parse(idx.bytes.toString()) as ImageIndex;
  assert.equal(parsed.mediaType, MediaType.OciIndex);
  assert.deepEqual(parsed.manifests.map((d) => d.platform), [{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux' }]);
  assert.deepEqual(parsed.manifests.map((d) => d.digest), [a.descriptor.digest, arm.descriptor.digest]);
  assert.notEqual(a.descriptor.digest, arm.descriptor.digest);

  // History names where the layer lands and its diffid, never the SRC as typed (a host path).
  let bytes = '';
  for await (const c of a.config.open()) bytes += Buffer.from(c).toString();
  const config = JSON.parse(bytes) as ImageConfig;
  assert.equal(config.history?.at(-1)?.created_by, `kocache layer /app ${D1}`);
  const elsewhere = assembleManifest({ ...opts, layers: [{ ...layer, spec: '/home/ci/work/app:/app' }] });
  assert.equal(elsewhere.descriptor.digest, a.descriptor.digest, 'the SRC as typed does not reach the image');
  assert.equal(historyLine('', D1), `kocache layer / ${D1}`);
});
