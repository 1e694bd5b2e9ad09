import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { CacheStore } from '../src/cache/store.js';
import { parseReference } from '../src/reference/reference.js';
import { RegistryClient } from '../src/remote/client.js';
import { pushImage } from '../src/remote/push.js';
import { isOneLineError, runCli, tempDir } from './helpers/cli.js';
import { indexOf, randomImage } from './helpers/images.js';
import { appTree, readDirManifest, skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, freePort, startRegistry } from './helpers/registry.js';

describe('kocache warm', () => {
  let reg: RunningRegistry;
  let ref: string;
  let index: ReturnType<typeof indexOf>;
  const dirs: string[] = [];
  const newDir = () => {
    const d = tempDir('kocache-warm-');
    dirs.push(d);
    return d;
  };

  before(async () => {
    reg = await startRegistry();
    index = indexOf([randomImage([120_000, 8_000], 'amd64'), randomImage([90_000], 'arm64')]);
    const client = new RegistryClient();
    await pushImage(client, parseReference(`${reg.host}/warm/base:v1`), index);
    await client.close();
    ref = `${reg.host}/warm/base:v1`;
  });
  after(async () => {
    await reg.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('warm REF fetches every platform once; a second warm fetches nothing', async () => {
    const cacheDir = newDir();
    const first = await runCli(['warm', ref, '--json'], { KOCACHE: cacheDir });
    assert.equal(first.code, 0, first.stderr);
    const r1 = JSON.parse(first.stdout).warmed[0] as { digest: string; platforms: string[]; layers: number; fetched: number };
    assert.equal(r1.digest, index.descriptor.digest);
    assert.deepEqual(r1.platforms, ['linux/amd64', 'linux/arm64']);
    assert.deepEqual([r1.layers, r1.fetched], [3, 3]);
    const cache = new CacheStore(cacheDir);
    for (const m of index.manifests) for (const l of m.layers) assert.equal(await cache.verifyBlob(l.descriptor.digest, l.descriptor.size), 'ok');

    const gets = reg.requests('GET');
    const second = await runCli(['warm', ref], { KOCACHE: cacheDir });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /3 layers, 0 fetched \(0 B\), 3 already cached/);
    assert.equal(reg.requests('GET'), gets, 'nothing downloaded again');

    const ls = await runCli(['ls', '--json'], { KOCACHE: cacheDir });
    const keys = (JSON.parse(ls.stdout) as { key: string }[]).map((r) => r.key);
    assert.ok(keys.includes(`img/${reg.host}/warm/base/tag/v1`), 'tag record');
    assert.ok(keys.includes(`img/${reg.host}/warm/base/blob/${index.descriptor.digest}`), 'index record');
  });

  test('--platform limits what is fetched', async () => {
    const cacheDir = newDir();
    const r = await runCli(['warm', ref, '--platform', 'linux/arm64', '--json'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout).warmed[0] as { platforms: string[]; fetched: number };
    assert.deepEqual(out.platforms, ['linux/arm64']);
    assert.equal(out.fetched, 1);
    const missing = await runCli(['warm', ref, '--platform', 'linux/ppc64le'], { KOCACHE: cacheDir });
    assert.ok(isOneLineError(missing), missing.stderr);
    assert.match(missing.stderr, /has no linux\/ppc64le image/);
  });

  test('--offline fails naming an unwarmed reference, and succeeds once it is warm', async () => {
    const cacheDir = newDir();
    const cold = await runCli(['warm', ref, '--offline'], { KOCACHE: cacheDir });
    assert.ok(isOneLineError(cold), cold.stderr);
    assert.ok(cold.stderr.includes(`${ref} is not in the cache`), cold.stderr);
    assert.equal((await runCli(['warm', ref], { KOCACHE: cacheDir })).code, 0);
    const before = reg.log().length;
    const warm = await runCli(['warm', ref, '--offline'], { KOCACHE: cacheDir });
    assert.equal(warm.code, 0, warm.stderr);
    assert.doesNotMatch(reg.log().slice(before), /HTTP\/1\.1"/, 'offline: no request');
  });

  test('bad input: unknown reference, unreachable registry, invalid reference, nothing to warm', async () => {
    const cacheDir = newDir();
    const unknown = await runCli(['warm', `${reg.host}/warm/nope:v1`], { KOCACHE: cacheDir });
    assert.ok(isOneLineError(unknown), unknown.stderr);
    assert.match(unknown.stderr, /not found/);
    const port = await freePort();
    const down = await runCli(['warm', `127.0.0.1:${port}/x:1`], { KOCACHE: cacheDir });
    assert.ok(isOneLineError(down), down.stderr);
    assert.match(down.stderr, /cannot reach registry 127\.0\.0\.1:\d+: connection refused; and base image .* is not in the cache/);
    assert.doesNotMatch(down.stderr, /run kocache warm/, 'no advice to run the command that just failed');
    assert.equal(down.code, 1);
    const bad = await runCli(['warm', 'UPPER/Case'], { KOCACHE: cacheDir });
    assert.ok(isOneLineError(bad), bad.stderr);
    assert.equal(bad.code, 2, 'an invalid reference is bad usage');
    const none = await runCli(['warm'], { KOCACHE: cacheDir });
    assert.ok(isOneLineError(none), none.stderr);
    assert.equal(none.code, 2);
  });

  test('warm SRC --import-path pre-builds the layer build would build', async () => {
    const cacheDir = newDir();
    const src = newDir();
    writeFileSync(join(src, 'app'), randomBytes(100_000));
    const args = [`${join(src, 'app')}:/usr/bin/app`, '--import-path', 'example.com/app', '--platform', 'linux/arm64'];
    const warm = await runCli(['warm', ...args, '--json'], { KOCACHE: cacheDir });
    assert.equal(warm.code, 0, warm.stderr);
    const w = JSON.parse(warm.stdout).warmed[0] as { digest: string; cached: boolean; platform: string };
    assert.equal(w.cached, false);
    assert.equal(w.platform, 'linux/arm64');
    const build = await runCli(['build', ...args], { KOCACHE: cacheDir });
    assert.equal(build.code, 0, build.stderr);
    const b = JSON.parse(build.stdout) as { digest: string; cached: boolean };
    assert.deepEqual([b.digest, b.cached], [w.digest, true]);
  });
});

describe('publish on a warmed base', () => {
  let regA: RunningRegistry;
  let regB: RunningRegistry;
  let aStopped = false;
  let work: string;
  let base: string;
  let index: ReturnType<typeof indexOf>;
  let env: Record<string, string>;

  before(async () => {
    regA = await startRegistry();
    regB = await startRegistry();
    index = indexOf([randomImage([80_000, 5_000], 'amd64'), randomImage([60_000], 'arm64')]);
    const client = new RegistryClient();
    await pushImage(client, parseReference(`${regA.host}/lib/base:3`), index);
    await client.close();
    base = `${regA.host}/lib/base:3`;
    work = tempDir('kocache-warm-publish-');
    appTree(work);
    env = { KOCACHE: join(work, 'cache') };
    const warm = await runCli(['warm', base], env);
    assert.equal(warm.code, 0, warm.stderr);
  });
  after(async () => {
    if (!aStopped) await regA.stop();
    await regB.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const publish = (target: string, extra: string[] = [], e = env) =>
    runCli(['publish', 'app:/app', '--base', base, '--repo', target, '--platform', 'linux/amd64', ...extra], e, { cwd: work });

  test('with the base registry up, a warm cache costs one manifest HEAD there and nothing else', async () => {
    const heads = regA.requests('HEAD', /\/manifests\//);
    const gets = regA.requests('GET');
    const r = await publish(`${regB.host}/app:1`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(regA.requests('HEAD', /\/manifests\//) - heads, 1);
    assert.equal(regA.requests('GET') - gets, 0, 'no manifest, config or layer fetched from the base registry');
  });

  test('with the base registry down, publish warns, takes the base from the cache and pushes it all', async () => {
    await regA.stop();
    aStopped = true;
    const r = await publish(`${regB.host}/app:2`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`kocache: warning: cannot reach registry ${regA.host.replace(/\./g, '\\.')}: connection refused; using the cached ${base}`));
    const out = join(work, 'copied');
    await skopeo('copy', '--src-tls-verify=false', `docker://${regB.host}/app:2`, `dir:${out}`);
    const { manifest } = readDirManifest(out);
    const layers = (manifest.layers as { digest: string }[]).map((l) => l.digest);
    assert.deepEqual(layers.slice(0, 2), index.manifests[0]!.layers.map((l) => l.descriptor.digest), 'base layers first');
  });

  test('an unwarmed base with its registry down, or --offline, fails naming the base', async () => {
    const fresh = { KOCACHE: join(work, 'fresh-cache') };
    const down = await publish(`${regB.host}/app:3`, [], fresh);
    assert.ok(isOneLineError(down), down.stderr);
    assert.ok(down.stderr.includes(`base image ${base} is not in the cache`), down.stderr);
    const offline = await publish(`${regB.host}/app:3`, ['--offline'], fresh);
    assert.ok(isOneLineError(offline), offline.stderr);
    assert.ok(offline.stderr.includes(`${base} is not in the cache and fetching is off (offline)`), offline.stderr);
    const warmOffline = await publish(`${regB.host}/app:4`, ['--offline']);
    assert.equal(warmOffline.code, 0, warmOffline.stderr);
  });
});
