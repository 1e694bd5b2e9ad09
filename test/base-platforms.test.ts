import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseReference } from '../src/reference/reference.js';
import { RegistryClient } from '../src/remote/client.js';
import { pushImage } from '../src/remote/push.js';
import { sha256Digest } from '../src/oci/digest.js';
import { MediaType } from '../src/oci/mediatypes.js';
import type { PushableIndex } from '../src/oci/pushable.js';
import { type FaultProxy, startFaultProxy } from './helpers/fault-proxy.js';
import { isOneLineError, runCli, tempDir } from './helpers/cli.js';
import { randomImage } from './helpers/images.js';
import { makeDockerArchive, makeOciLayout, standardLayers } from './helpers/archives.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

const PLATFORMS = 1000;

describe('an index of a thousand platforms', () => {
  let reg: RunningRegistry;
  let proxy: FaultProxy;
  let manifestDigest: string;
  let configDigest: string;
  const dirs: string[] = [];
  const newDir = () => {
    const d = tempDir('kocache-platforms-');
    dirs.push(d);
    return d;
  };

  before(async () => {
    reg = await startRegistry();
    // One image named by every entry, each entry a platform of its own (linux/amd64/v0 ... v999).
    const img = randomImage([20_000]);
    manifestDigest = img.descriptor.digest;
    configDigest = img.config.descriptor.digest;
    const bytes = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: Array.from({ length: PLATFORMS }, (_, i) => ({ ...img.descriptor, platform: { os: 'linux', architecture: 'amd64', variant: `v${i}` } })),
    }));
    const index: PushableIndex = { kind: 'index', bytes, descriptor: { mediaType: MediaType.OciIndex, digest: sha256Digest(bytes), size: bytes.length }, manifests: [img] };
    const client = new RegistryClient();
    await pushImage(client, parseReference(`${reg.host}/many/base:v1`), index);
    await client.close();
    proxy = await startFaultProxy(reg.port, []);
  });
  after(async () => {
    await proxy.stop();
    await reg.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const gets = (path: string) => proxy.seen.filter((r) => r.method === 'GET' && r.path.endsWith(path)).length;

  test('warm fetches the manifest and the config once each, not once per platform', async () => {
    const r = await runCli(['warm', `${proxy.host}/many/base:v1`, '--json'], { KOCACHE: newDir() });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(gets(`/manifests/${manifestDigest}`), 1);
    assert.equal(gets(`/blobs/${configDigest}`), 1);
    assert.ok(proxy.seen.length < 20, `${proxy.seen.length} requests`);
  });

  test('several --platform naming one image fetch it once', async () => {
    proxy.seen.length = 0;
    const dir = newDir();
    const r = await runCli(['warm', `${proxy.host}/many/base:v1`, '--platform', 'linux/amd64/v1', '--platform', 'linux/amd64/v2', '--platform', 'linux/amd64/v3', '--json'], { KOCACHE: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(gets(`/manifests/${manifestDigest}`), 1);
    assert.equal(gets(`/blobs/${configDigest}`), 1);
  });

  test('a platform it lacks: one line saying how many it has and naming a few', async () => {
    const r = await runCli(['warm', `${proxy.host}/many/base:v1`, '--platform', 'linux/ppc64le'], { KOCACHE: newDir() });
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, /has no linux\/ppc64le image \(it has: 1000 platforms, among them linux\/amd64\/v0, linux\/amd64\/v1, /);
    assert.ok(r.stderr.length < 400, `${r.stderr.length} characters`);
  });
});

describe('an OCI layout of a thousand platforms naming one image', () => {
  let reg: RunningRegistry;
  let proxy: FaultProxy;
  let layout: string;
  let dir: string;

  before(async () => {
    reg = await startRegistry();
    proxy = await startFaultProxy(reg.port, []);
    dir = tempDir('kocache-platforms-layout-');
    const a = makeDockerArchive(dir, standardLayers().slice(0, 2));
    layout = makeOciLayout(a.tarPath, dir);
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { mediaType: string; digest: string; size: number }[] };
    const m = index.manifests[0]!;
    const manifests = Array.from({ length: PLATFORMS }, (_, i) => ({ mediaType: m.mediaType, digest: m.digest, size: m.size, platform: { os: 'linux', architecture: 'amd64', variant: `v${i}` } }));
    writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests }));
  });
  after(async () => {
    await proxy.stop();
    await reg.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('push puts the manifest once (and the index), not once per platform; warm counts the image once', async () => {
    const cache = join(dir, 'cache');
    const w = await runCli(['warm', '--json', '--tarball', layout], { KOCACHE: cache });
    assert.equal(w.code, 0, w.stderr);
    assert.equal((JSON.parse(w.stdout).warmed[0] as { layers: number }).layers, 2);
    const r = await runCli(['push', '--json', layout, `${proxy.host}/many/layout:v1`], { KOCACHE: cache });
    assert.equal(r.code, 0, r.stderr);
    const puts = proxy.seen.filter((x) => x.method === 'PUT' && x.path.includes('/manifests/'));
    assert.equal(puts.length, 2, puts.map((p) => p.path).join('\n'));
    assert.ok(proxy.seen.length < 30, `${proxy.seen.length} requests`);
  });
});
