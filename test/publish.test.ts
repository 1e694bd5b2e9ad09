import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CacheStore } from '../src/cache/store.js';
import { parseDigest, sha256Digest } from '../src/oci/digest.js';
import type { ImageConfig, ImageIndex, ImageManifest } from '../src/oci/manifest.js';
import { type PublishOut, isOneLineError, runCli, tempDir } from './helpers/cli.js';
import { htpasswdConfig, writeHtpasswd } from './helpers/htpasswd.js';
import { appTree, readDirManifest, skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

let reg: RunningRegistry;
let work: string;
let env: Record<string, string>;

before(async () => {
  reg = await startRegistry();
  work = tempDir('kocache-publish-');
  env = { KOCACHE: join(work, 'cache') };
});
after(async () => {
  await reg?.stop();
});

async function publish(args: string[], cwd = work): Promise<PublishOut> {
  const r = await runCli(['publish', '--json', ...args], env, { cwd });
  assert.equal(r.code, 0, `publish ${args.join(' ')} failed: ${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as PublishOut;
}

/**
 * ~24 MB of text made of random words: compresses slowly at level 9 on one job (seconds), while
 * a small layer's upload takes milliseconds.
 */
function slowToCompress(path: string): void {
  const words = Array.from({ length: 512 }, (_, i) => `w${(i * 2654435761) % 100003}`);
  let x = 12345;
  const parts: string[] = [];
  for (let n = 0; n < 24 << 20; ) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const w = `${words[x % words.length]!} `;
    parts.push(w);
    n += w.length;
  }
  writeFileSync(path, parts.join(''));
}

async function rawManifest(ref: string): Promise<string> {
  return skopeo('inspect', '--raw', '--tls-verify=false', `docker://${ref}`);
}

describe('publish to a registry', () => {
  test('scratch + 2 layers: skopeo reads back the manifest, copies the image, config has what was asked', async () => {
    const dir = join(work, 'two');
    mkdirSync(dir);
    appTree(dir);
    const r = await runCli(
      ['publish', 'app:/usr/local/bin/app', 'etc:/etc/app', '--base', 'scratch', '--repo', `${reg.host}/two:v1`,
        '--entrypoint', '["/usr/local/bin/app","--serve"]', '--env', 'MODE=prod', '--env', 'EMPTY=', '--label', 'org.example.team=core',
        '--workdir', '/srv', '--user', '65532'],
      env, { cwd: dir },
    );
    assert.equal(r.code, 0, r.stderr);
    const last = r.stdout.trim().split('\n').pop()!;
    assert.match(last, new RegExp(`^${reg.host.replace(/\./g, '\\.')}/two@sha256:[a-f0-9]{64}$`), 'the last stdout line is REGISTRY/REPO@DIGEST');
    const digest = last.split('@')[1]!;

    const raw = await rawManifest(`${reg.host}/two:v1`);
    assert.equal(sha256Digest(raw), digest, 'the registry holds the exact manifest bytes kocache printed the digest of');
    const m = JSON.parse(raw) as ImageManifest;
    assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(m.config.mediaType, 'application/vnd.oci.image.config.v1+json');
    assert.equal(m.layers.length, 2);
    for (const l of m.layers) assert.equal(l.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');

    const out = join(dir, 'copied');
    await skopeo('copy', '--src-tls-verify=false', `docker://${reg.host}/two:v1`, `dir:${out}`);
    const config = readDirManifest(out).config as unknown as ImageConfig;
    assert.equal(config.rootfs.diff_ids.length, 2);
    assert.equal(config.architecture, 'amd64');
    assert.equal(config.os, 'linux');
    assert.equal(config.created, '1970-01-01T00:00:00Z');
    assert.deepEqual(config.config?.Entrypoint, ['/usr/local/bin/app', '--serve']);
    assert.deepEqual(config.config?.Env, ['MODE=prod', 'EMPTY=']);
    assert.deepEqual(config.config?.Labels, { 'org.example.team': 'core' });
    assert.equal(config.config?.WorkingDir, '/srv');
    assert.equal(config.config?.User, '65532');
    // Where each layer lands and its diffid: nothing of the SRC as typed.
    assert.deepEqual(config.history, [
      { created: '1970-01-01T00:00:00Z', created_by: `kocache layer /usr/local/bin/app ${config.rootfs.diff_ids[0]}` },
      { created: '1970-01-01T00:00:00Z', created_by: `kocache layer /etc/app ${config.rootfs.diff_ids[1]}` },
    ]);
  });

  test('publishing unchanged inputs again uploads nothing and gives the same digest', async () => {
    const dir = join(work, 'again');
    mkdirSync(dir);
    appTree(dir);
    const args = ['app:/app', 'etc:/etc/app', '--base', 'scratch', '--repo', `${reg.host}/again`, '--entrypoint', '/app'];
    const first = await publish(args, dir);
    // The etc layer is in another repository already (the first test's): it may be mounted from there.
    assert.equal(first.uploaded + first.mounted, 3, 'two layers and the config');
    const uploads = reg.uploadsStarted('again');
    assert.ok(uploads >= 2);

    const manifestPuts = reg.requests('PUT', /^\/v2\/again\/manifests\//);
    assert.equal(manifestPuts, 1);
    const second = await publish(args, dir);
    assert.equal(second.digest, first.digest);
    assert.equal(reg.requests('PUT', /^\/v2\/again\/manifests\//), manifestPuts, 'the tag already named this manifest: not put again');
    assert.equal(second.reference, first.reference);
    assert.deepEqual([second.uploaded, second.mounted, second.present], [0, 0, 3]);
    assert.equal(reg.uploadsStarted('again'), uploads, 'no upload session was even started');

    // SOURCE_DATE_EPOCH is part of the inputs: a new time is a new image.
    const dated = await runCli(['publish', '--json', ...args], { ...env, SOURCE_DATE_EPOCH: '1700000000' }, { cwd: dir });
    assert.equal(dated.code, 0, dated.stderr);
    assert.notEqual((JSON.parse(dated.stdout) as PublishOut).digest, first.digest);
  });

  test('a layer is uploaded as soon as it is ready, while a bigger one is still compressing', async () => {
    const dir = join(work, 'early');
    mkdirSync(join(dir, 'big'), { recursive: true });
    writeFileSync(join(dir, 'small.txt'), 'small layer\n');
    slowToCompress(join(dir, 'big', 'words.txt'));
    const layerArgs = ['--level', '9', '--jobs', '1'];
    // The layers' digests, known ahead from a build of each into a scratch cache (same bytes).
    const digestOf = async (spec: string) => {
      const r = await runCli(['build', spec, '--import-path', 'ahead', ...layerArgs], { KOCACHE: join(dir, 'ahead-cache') }, { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { digest: string }).digest;
    };
    const small = await digestOf('small.txt:/small.txt');
    const big = await digestOf('big:/big');
    const cacheDir = join(dir, 'cache');
    const bigInCache = new CacheStore(cacheDir).blobPath(parseDigest(big));

    const run = runCli(['publish', '--json', 'small.txt:/small.txt', 'big:/big', '--base', 'scratch', '--repo', `${reg.host}/early:v1`, ...layerArgs], { KOCACHE: cacheDir }, { cwd: dir });
    let smallInRegistryAt: number | undefined;
    let bigBuiltAt: number | undefined;
    let exited = false;
    void run.then(() => { exited = true; });
    while (!exited && (smallInRegistryAt === undefined || bigBuiltAt === undefined)) {
      const now = performance.now();
      if (smallInRegistryAt === undefined) {
        const head = await fetch(`http://${reg.host}/v2/early/blobs/${small}`, { method: 'HEAD' });
        if (head.status === 200) smallInRegistryAt = now;
      }
      if (bigBuiltAt === undefined && existsSync(bigInCache)) bigBuiltAt = now;
      await new Promise((r) => setTimeout(r, 10));
    }
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(smallInRegistryAt !== undefined, 'the small layer was seen in the registry while publish ran');
    assert.ok(bigBuiltAt !== undefined && smallInRegistryAt < bigBuiltAt, 'the small layer was in the registry before the big one had finished building');
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as PublishOut;
    assert.deepEqual([out.uploaded, out.mounted, out.present], [3, 0, 0], 'the early upload is counted once, as an upload');
    const raw = JSON.parse(await rawManifest(`${reg.host}/early:v1`)) as ImageManifest;
    assert.deepEqual(raw.layers.map((l) => l.digest), [small, big]);
  });

  test('several platforms with {arch} in SRC become an OCI index with one image per platform', async () => {
    const dir = join(work, 'multi');
    for (const arch of ['amd64', 'arm64']) {
      mkdirSync(join(dir, 'dist', arch), { recursive: true });
      writeFileSync(join(dir, 'dist', arch, 'app'), `binary for ${arch}\n`);
    }
    const res = await publish(
      ['dist/{arch}/app:/app', '--base', 'scratch', '--repo', `${reg.host}/multi:v2`, '--platform', 'linux/amd64', '--platform', 'linux/arm64', '--entrypoint', '/app'],
      dir,
    );
    const raw = await rawManifest(`${reg.host}/multi:v2`);
    assert.equal(sha256Digest(raw), res.digest);
    const index = JSON.parse(raw) as ImageIndex;
    assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(index.manifests.map((d) => d.platform), [
      { architecture: 'amd64', os: 'linux' },
      { architecture: 'arm64', os: 'linux' },
    ]);
    const layers: string[] = [];
    for (const d of index.manifests) {
      const child = JSON.parse(await rawManifest(`${reg.host}/multi@${d.digest}`)) as ImageManifest;
      layers.push(child.layers[0]!.digest);
      const out = join(dir, `copy-${d.platform!.architecture}`);
      await skopeo('copy', '--src-tls-verify=false', `docker://${reg.host}/multi@${d.digest}`, `dir:${out}`);
      assert.equal((readDirManifest(out).config as unknown as ImageConfig).architecture, d.platform!.architecture);
    }
    assert.notEqual(layers[0], layers[1], 'each platform got its own file');
  });

  test('an image published by kocache serves as the base of another: layers, config and history kept, nothing re-uploaded', async () => {
    const dir = join(work, 'layered');
    mkdirSync(dir);
    appTree(dir);
    mkdirSync(join(dir, 'more'));
    writeFileSync(join(dir, 'more', 'extra.txt'), 'extra\n');
    const base = await publish(['etc:/etc/app', '--base', 'scratch', '--repo', `${reg.host}/base:1`, '--env', 'PATH=/bin', '--env', 'KEEP=yes', '--cmd', '/bin/sh'], dir);
    const baseManifest = JSON.parse(await rawManifest(`${reg.host}/base:1`)) as ImageManifest;

    const app = await publish(['app:/app', 'more:/more', '--base', `${reg.host}/base:1`, '--repo', `${reg.host}/app:1`, '--env', 'PATH=/app:/bin', '--entrypoint', '/app'], dir);
    assert.equal(app.uploaded, 3, 'two new layers and the config');
    assert.equal(app.mounted + app.present, 1, 'the base layer was mounted from base, not uploaded');
    assert.notEqual(app.digest, base.digest);

    const m = JSON.parse(await rawManifest(`${reg.host}/app:1`)) as ImageManifest;
    assert.equal(m.layers.length, 3);
    assert.deepEqual(m.layers[0], baseManifest.layers[0]);
    assert.equal(m.annotations?.['org.opencontainers.image.base.digest'], base.digest);

    const out = join(dir, 'copied');
    await skopeo('copy', '--src-tls-verify=false', `docker://${reg.host}/app:1`, `dir:${out}`);
    const config = readDirManifest(out).config as unknown as ImageConfig;
    assert.equal(config.rootfs.diff_ids.length, 3);
    assert.deepEqual(config.config?.Env, ['PATH=/app:/bin', 'KEEP=yes']);
    assert.deepEqual(config.config?.Entrypoint, ['/app']);
    assert.equal(config.config?.Cmd, undefined, "the base's cmd was for the base's entrypoint");
    assert.deepEqual(config.history?.map((h) => h.created_by), ['/etc/app', '/app', '/more'].map((d, i) => `kocache layer ${d} ${config.rootfs.diff_ids[i]}`));

    // The same publish again: everything is there already, same digest.
    const again = await publish(['app:/app', 'more:/more', '--base', `${reg.host}/base:1`, '--repo', `${reg.host}/app:1`, '--env', 'PATH=/app:/bin', '--entrypoint', '/app'], dir);
    assert.equal(again.digest, app.digest);
    assert.equal(again.uploaded, 0);
  });
});

test('--offline publishes on a warmed base with its registry gone', async () => {
  const own = await startRegistry();
  const dir = tempDir('kocache-offline-');
  appTree(dir);
  const fresh = { KOCACHE: join(dir, 'cache') };
  let stopped = false;
  try {
    const b = await runCli(['publish', 'etc:/etc/app', '--base', 'scratch', '--repo', `${own.host}/base:1`], { KOCACHE: join(dir, 'other-cache') }, { cwd: dir });
    assert.equal(b.code, 0, b.stderr);
    const warm = await runCli(['warm', `${own.host}/base:1`], fresh, { cwd: dir });
    assert.equal(warm.code, 0, warm.stderr);
    await own.stop();
    stopped = true;
    const args = ['publish', '--json', 'app:/app', '--base', `${own.host}/base:1`, '--output', 'oci:out', '--offline'];
    const r = await runCli(args, fresh, { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const out = join(dir, 'copied');
    await skopeo('copy', `oci:${join(dir, 'out')}`, `dir:${out}`);
    assert.equal((readDirManifest(out).config as unknown as ImageConfig).rootfs.diff_ids.length, 2, 'base layer and app layer');
  } finally {
    if (!stopped) await own.stop();
  }
});

describe('publish refuses bad input with one line', () => {
  let dir: string;
  before(() => {
    dir = join(work, 'bad');
    mkdirSync(dir, { recursive: true });
    appTree(dir);
  });

  // Exit 2 for bad usage (what was typed cannot work), 1 for what the world said (docs/cli.md).
  const cases: [string, () => string[], RegExp, number][] = [
    ['unparsable --repo', () => ['app:/app', '--base', 'scratch', '--repo', 'Not A Reference'], /invalid image reference/, 2],
    ['--repo with a digest', () => ['app:/app', '--base', 'scratch', '--repo', `${reg.host}/x@sha256:${'0'.repeat(64)}`], /digest/, 2],
    ['unparsable --base', () => ['app:/app', '--base', 'UPPER/Case:tag', '--repo', `${reg.host}/x`], /invalid image reference/, 2],
    ['unreachable registry', () => ['app:/app', '--base', 'scratch', '--repo', '127.0.0.1:1/x'], /cannot reach registry 127\.0\.0\.1:1/, 1],
    ['missing SRC', () => ['nope:/app', '--base', 'scratch', '--repo', `${reg.host}/x`], /nope.*no such file/, 1],
    ['bad --env', () => ['app:/app', '--base', 'scratch', '--repo', `${reg.host}/x`, '--env', 'NOEQUALS'], /--env "NOEQUALS"/, 2],
    ['bad --label', () => ['app:/app', '--base', 'scratch', '--repo', `${reg.host}/x`, '--label', '=v'], /--label/, 2],
    ['bad --entrypoint JSON', () => ['app:/app', '--base', 'scratch', '--repo', `${reg.host}/x`, '--entrypoint', '["/app"'], /--entrypoint/, 2],
    ['unknown --output kind', () => ['app:/app', '--base', 'scratch', '--output', 'zip:out.zip'], /unknown --output kind "zip"/, 2],
    ['bad --platform', () => ['app:/app', '--base', 'scratch', '--repo', `${reg.host}/x`, '--platform', 'linux/x86'], /unknown architecture/, 2],
    ['unknown placeholder', () => ['{goarch}/app:/app', '--base', 'scratch', '--repo', `${reg.host}/x`], /unknown placeholder \{goarch\}/, 2],
    ['no --repo and no --output', () => ['app:/app', '--base', 'scratch'], /needs --repo/, 2],
    ['multi-platform docker-archive', () => ['app:/app', '--base', 'scratch', '--output', 'docker-archive:x.tar', '--platform', 'linux/amd64', '--platform', 'linux/arm64'], /docker-archive holds one image/, 2],
    ['an OCI layout inside a layer source', () => ['app:/app', 'etc:/etc', '--base', 'scratch', '--output', 'oci:etc/out'], /output .*etc\/out is inside the layer source .*etc: the next build would pack it/, 2],
    ['a docker-archive over the layer source', () => ['app:/app', '--base', 'scratch', '--output', 'docker-archive:app'], /is the layer source .*app itself/, 2],
    ['--image-refs in a folder that is not there (before any push)', () => ['app:/app', '--base', 'scratch', '--repo', `${reg.host}/refs-first`, '--image-refs', 'no/such/dir/refs'], /cannot write --image-refs file .*no\/such\/dir\/refs: no such file/, 1],
    ['--digest-file that is a folder', () => ['app:/app', '--base', 'scratch', '--repo', `${reg.host}/refs-first`, '--digest-file', '.'], /cannot write --digest-file .*: is a directory/, 1],
    ['--tag on a docker-archive without --repo', () => ['app:/app', '--base', 'scratch', '--output', 'docker-archive:x.tar', '--tag', 'v2'], /give --repo with --tag/, 2],
    ['a base tag that does not exist', () => ['app:/app', '--base', `${reg.host}/base:no-such-tag`, '--repo', `${reg.host}/x`], /no-such-tag/, 1],
    ['a platform the base lacks', () => ['app:/app', '--base', `${reg.host}/base:1`, '--repo', `${reg.host}/x`, '--platform', 'linux/s390x'], /s390x/, 1],
  ];
  test('a docker-archive in folders not yet there: they are made, as for a layout', async () => {
    const r = await runCli(['publish', 'etc:/etc', '--base', 'scratch', '--output', 'docker-archive:new/a/x.tar'], env, { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(join(dir, 'new', 'a', 'x.tar')));
    rmSync(join(dir, 'new'), { recursive: true });
  });

  test('an output inside a layer source reached through a link is refused too', async () => {
    symlinkSync('etc', join(dir, 'etc-link'));
    const r = await runCli(['publish', 'etc:/etc', '--base', 'scratch', '--output', 'docker-archive:etc-link/o.tar'], env, { cwd: dir });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /inside the layer source/);
    assert.equal(existsSync(join(dir, 'etc', 'o.tar')), false);
  });

  test('an output inside a layer source that has excludes is taken as excluded', async () => {
    const r = await runCli(['publish', 'etc:/etc', '--base', 'scratch', '--output', 'oci:etc/kept-out', '--exclude', 'kept-out'], env, { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(join(dir, 'etc', 'kept-out', 'index.json')));
    rmSync(join(dir, 'etc', 'kept-out'), { recursive: true });
  });

  for (const [name, args, message, code] of cases) {
    test(name, async () => {
      const r = await runCli(['publish', ...args()], env, { cwd: dir });
      assert.ok(isOneLineError(r), `want one error line, got code ${r.code}:\n${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.code, code, r.stderr);
      assert.equal(r.stdout.trim(), '', 'nothing on stdout');
    });
  }

  test('a result file that cannot be written stops publish before it pushes', async () => {
    await runCli(['publish', 'app:/app', '--base', 'scratch', '--repo', `${reg.host}/refs-first`, '--image-refs', 'no/such/dir/refs'], env, { cwd: dir });
    assert.equal(reg.requests('PUT', /^\/v2\/refs-first\//), 0, 'no upload, no manifest');
  });

  test('401 from the registry', async () => {
    const root = tempDir();
    const htpasswd = join(root, 'htpasswd');
    writeHtpasswd(htpasswd, { alice: 'correct horse' });
    const locked = await startRegistry({ extraConfig: htpasswdConfig(htpasswd) });
    try {
      // A second layer that takes seconds to compress: the refused upload of the first must end
      // the publish before that build is done, not after.
      mkdirSync(join(root, 'slow'));
      slowToCompress(join(root, 'slow', 'words.txt'));
      const cacheDir = join(root, 'cache');
      const r = await runCli(['publish', 'app:/app', `${join(root, 'slow')}:/slow`, '--base', 'scratch', '--repo', `${locked.host}/x`, '--level', '9', '--jobs', '1'],
        { ...env, KOCACHE: cacheDir, DOCKER_CONFIG: root }, { cwd: dir });
      assert.ok(isOneLineError(r), `want one error line, got code ${r.code}:\n${r.stderr}`);
      assert.match(r.stderr, /401|auth|credentials|denied/i);
      assert.doesNotMatch(r.stderr, /correct horse/);
      const ls = await runCli(['ls', '--json'], { KOCACHE: cacheDir });
      const built = (JSON.parse(ls.stdout) as { key: string }[]).filter((x) => x.key.startsWith('tree/'));
      assert.equal(built.length, 1, 'the small layer was built; the slow one was abandoned when its sibling\'s upload was refused');
    } finally {
      await locked.stop();
    }
  });
});
