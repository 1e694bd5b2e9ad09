import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import cacache from 'cacache';
import { CacheStore, trashPath } from '../src/cache/store.js';
import type { Digest } from '../src/oci/digest.js';
import type { ImageManifest } from '../src/oci/manifest.js';
import { parseReference } from '../src/reference/reference.js';
import { RegistryClient } from '../src/remote/client.js';
import { pushImage } from '../src/remote/push.js';
import { makeDockerArchive, standardLayers } from './helpers/archives.js';
import { CLI, isOneLineError, runCli, tempDir } from './helpers/cli.js';
import { randomImage } from './helpers/images.js';
import { appTree, skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

const HOUR = 3600_000;

/** Flips one byte in the middle of a cached blob, as a bad disk or a stray write would; the size stays. */
function flipByte(cache: CacheStore, digest: Digest): void {
  const path = cache.blobPath(digest);
  const bytes = readFileSync(path);
  const at = Math.floor(bytes.length / 2);
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(path, bytes);
}

async function manifestOf(cache: CacheStore, digest: Digest): Promise<ImageManifest> {
  const parts: Buffer[] = [];
  for await (const c of cache.readBlob(digest)) parts.push(c as Buffer);
  return JSON.parse(Buffer.concat(parts).toString('utf8')) as ImageManifest;
}

describe('a damaged cache heals itself', () => {
  let reg: RunningRegistry;
  const newDir = () => tempDir('kocache-heal-');
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg?.stop();
  });

  test('a corrupt blob of an imported archive is dropped and re-imported: push works, warm --tarball imports again', async () => {
    const dir = newDir();
    const archive = makeDockerArchive(dir, standardLayers(), { gzip: true });
    const env = { KOCACHE: join(dir, 'cache') };
    const cache = new CacheStore(env.KOCACHE);
    const warm = await runCli(['warm', '--tarball', archive.path, '--json'], env);
    assert.equal(warm.code, 0, warm.stderr);
    const top = (JSON.parse(warm.stdout).warmed[0] as { digest: Digest }).digest;
    const manifest = await manifestOf(cache, top);

    flipByte(cache, manifest.layers[0]!.digest);
    const push = await runCli(['push', archive.path, `${reg.host}/heal/archive:v1`], env);
    assert.equal(push.code, 0, push.stderr);
    assert.equal(push.stderr.split('\n').filter((l) => /corrupt/.test(l)).length, 1, `one warning: ${push.stderr}`);
    // skopeo checks every digest it copies.
    await skopeo('copy', '--src-tls-verify=false', `docker://${reg.host}/heal/archive:v1`, `dir:${join(dir, 'copied')}`);
    assert.equal(await cache.checkBlob(manifest.layers[0]!.digest, manifest.layers[0]!.size), 'ok');

    flipByte(cache, manifest.config.digest);
    const again = await runCli(['warm', '--tarball', archive.path], env);
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stdout, /already cached/);
    assert.match(again.stdout, /imported/);
    assert.match(again.stderr, /corrupt; dropped them and importing it again/);
    assert.equal(await cache.checkBlob(manifest.config.digest, manifest.config.size), 'ok');
  });

  test('a corrupt base layer cached by warm REF is fetched again, by warm and by publish', async () => {
    const image = randomImage([150_000, 9_000]);
    const client = new RegistryClient();
    await pushImage(client, parseReference(`${reg.host}/heal/base:v1`), image);
    await client.close();
    const ref = `${reg.host}/heal/base:v1`;
    const dir = newDir();
    appTree(dir);
    const env = { KOCACHE: join(dir, 'cache') };
    const cache = new CacheStore(env.KOCACHE);
    const first = await runCli(['warm', ref], env);
    assert.equal(first.code, 0, first.stderr);
    const layer = image.layers[0]!.descriptor;

    flipByte(cache, layer.digest);
    const warm = await runCli(['warm', ref, '--json'], env);
    assert.equal(warm.code, 0, warm.stderr);
    assert.equal((JSON.parse(warm.stdout).warmed[0] as { fetched: number }).fetched, 1, 'the damaged layer is fetched again');
    assert.equal(warm.stderr.split('\n').filter((l) => /corrupt/.test(l)).length, 1, `one warning: ${warm.stderr}`);
    assert.equal(await cache.checkBlob(layer.digest, layer.size), 'ok');

    flipByte(cache, layer.digest);
    const pub = await runCli(['publish', 'app:/app', '--base', ref, '--output', 'oci:out'], env, { cwd: dir });
    assert.equal(pub.code, 0, pub.stderr);
    assert.match(pub.stderr, /corrupt; dropped it and fetching it again/);
    await skopeo('copy', `oci:${join(dir, 'out')}`, `dir:${join(dir, 'copied')}`);
    assert.equal(await cache.checkBlob(layer.digest, layer.size), 'ok');
  });

  test('a folder where a blob belongs is removed and the blob stored again; never a registry error', async () => {
    const dir = newDir();
    const archive = makeDockerArchive(dir, standardLayers());
    const env = { KOCACHE: join(dir, 'cache') };
    const cache = new CacheStore(env.KOCACHE);
    const warm = await runCli(['warm', '--tarball', archive.path, '--json'], env);
    assert.equal(warm.code, 0, warm.stderr);
    const layer = (await manifestOf(cache, (JSON.parse(warm.stdout).warmed[0] as { digest: Digest }).digest)).layers[0]!;
    rmSync(cache.blobPath(layer.digest));
    mkdirSync(cache.blobPath(layer.digest));
    const push = await runCli(['push', archive.path, `${reg.host}/heal/folder:v1`], env);
    assert.equal(push.code, 0, push.stderr);
    assert.doesNotMatch(push.stderr, /registry/);
    assert.equal(await cache.checkBlob(layer.digest, layer.size), 'ok');
  });
});

describe('gc never fails a running command', () => {
  const newDir = () => tempDir('kocache-heal-gc-');

  async function buildOnce(cacheDir: string, file: string) {
    const r = await runCli(['build', file, '--import-path', 'example.com/v'], { KOCACHE: cacheDir });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { digest: Digest; size: number; cached: boolean };
  }

  /** A cache holding one built layer, the file it was built from, and the build's result. */
  async function cacheWithOneLayer() {
    const dir = newDir();
    const cacheDir = join(dir, 'cache');
    const file = join(dir, 'v');
    writeFileSync(file, randomBytes(100_000));
    return { cacheDir, file, built: await buildOnce(cacheDir, file), cache: new CacheStore(cacheDir) };
  }

  test('a blob parked by gc is taken back by the command that reads it', async () => {
    const { cacheDir, file, built, cache } = await cacheWithOneLayer();
    // What gc does to a victim before it unlinks it (src/cache/gc.ts).
    renameSync(cache.blobPath(built.digest), trashPath(cache.blobPath(built.digest)));
    assert.equal((await buildOnce(cacheDir, file)).cached, true, 'a hit, not a rebuild');
    assert.equal(existsSync(cache.blobPath(built.digest)), true);
  });

  test('gc --verify --max-size looks at a victim again right before parking it', async () => {
    const { cacheDir, file, built, cache } = await cacheWithOneLayer();
    const victim = cache.blobPath(built.digest);
    const old = new Date(Date.now() - HOUR);
    utimesSync(victim, old, old);
    // A large (sparse) damaged blob makes the --verify pass long enough for a build to run in it.
    const big = cache.blobPath(`sha256:${randomBytes(32).toString('hex')}`);
    mkdirSync(dirname(big), { recursive: true });
    closeSync(openSync(big, 'w'));
    spawnSync('truncate', ['-s', '1G', big]);

    const gc = runCli(['gc', '--verify', '--max-size', '0', '--json'], { KOCACHE: cacheDir });
    let gone = 0;
    let finished = false;
    void gc.then(() => (finished = true));
    const watch = setInterval(() => {
      if (!existsSync(victim)) gone++;
    }, 2);
    try {
      while (!existsSync(join(cacheDir, 'gc.lock')) && !finished) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 300)); // gc has listed the content by now
      assert.equal(finished, false, 'gc still hashing');
      assert.equal((await buildOnce(cacheDir, file)).cached, true);
      const r = await gc;
      assert.equal(r.code, 0, r.stderr);
      assert.ok(JSON.parse(r.stdout).removed.some((x: { reason: string }) => x.reason === 'corrupt'), 'the verify pass ran');
    } finally {
      clearInterval(watch);
    }
    assert.equal(gone, 0, 'the blob the build used was never parked');
    assert.equal(await cache.checkBlob(built.digest, built.size), 'ok');
  });
});

describe('operator damage is one clear line, or repaired', () => {
  const newDir = () => tempDir('kocache-damage-');

  test('built/, stat/, verified/ replaced by files and gc.lock by a folder: build and gc work and put them right', async () => {
    const dir = newDir();
    const env = { KOCACHE: join(dir, 'cache') };
    const file = join(dir, 'a');
    writeFileSync(file, randomBytes(50_000));
    assert.equal((await runCli(['build', file, '--import-path', 'example.com/a'], env)).code, 0);
    for (const name of ['built', 'stat', 'verified']) {
      rmSync(join(env.KOCACHE, name), { recursive: true, force: true });
      writeFileSync(join(env.KOCACHE, name), 'put here by hand\n');
    }
    mkdirSync(join(env.KOCACHE, 'gc.lock', 'inside'), { recursive: true });
    const b = await runCli(['build', file, '--import-path', 'example.com/b'], env);
    assert.equal(b.code, 0, b.stderr);
    const gc = await runCli(['gc'], env);
    assert.equal(gc.code, 0, gc.stderr);
    for (const name of ['built', 'stat', 'verified']) assert.ok(lstatSync(join(env.KOCACHE, name)).isDirectory(), name);
    assert.equal(existsSync(join(env.KOCACHE, 'gc.lock')), false);
    const again = await runCli(['build', file, '--import-path', 'example.com/b'], env);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as { cached: boolean }).cached, true);
  });

  test('index records whose checksum is right but whose fields are wrong are misses', async () => {
    const dir = newDir();
    const env = { KOCACHE: join(dir, 'cache') };
    const file = join(dir, 'a');
    writeFileSync(file, randomBytes(50_000));
    assert.equal((await runCli(['build', file, '--import-path', 'example.com/a'], env)).code, 0);
    const records = await cacache.ls(env.KOCACHE);
    assert.ok(Object.keys(records).length > 0);
    // Written through cacache itself, so each line's checksum is right.
    for (const e of Object.values(records)) {
      await cacache.index.insert(env.KOCACHE, e.key, e.integrity, { size: e.size, metadata: null });
      await cacache.index.insert(env.KOCACHE, `${e.key}/sized`, e.integrity, { size: 'big' as unknown as number, metadata: e.metadata });
    }
    const b = await runCli(['build', file, '--import-path', 'example.com/a'], env);
    assert.equal(b.code, 0, b.stderr);
    assert.equal((JSON.parse(b.stdout) as { cached: boolean }).cached, false, 'a miss, rebuilt');
    for (const args of [['ls'], ['gc']]) {
      const r = await runCli(args, env);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
  });

  test('index bucket files replaced by folders are dropped: a miss, rebuilt; ls and gc work', async () => {
    const dir = newDir();
    const env = { KOCACHE: join(dir, 'cache') };
    const file = join(dir, 'a');
    writeFileSync(file, randomBytes(50_000));
    const first = await runCli(['build', file, '--import-path', 'example.com/a'], env);
    assert.equal(first.code, 0, first.stderr);
    const buckets = spawnSync('find', [join(env.KOCACHE, 'index-v5'), '-type', 'f'], { encoding: 'utf8' }).stdout.trim().split('\n');
    assert.ok(buckets.length > 1);
    for (const b of buckets) {
      rmSync(b);
      mkdirSync(join(b, 'inside'), { recursive: true });
    }
    const b = await runCli(['build', file, '--import-path', 'example.com/a'], env);
    assert.equal(b.code, 0, b.stderr);
    const out = JSON.parse(b.stdout) as { cached: boolean; digest: string };
    assert.deepEqual([out.cached, out.digest], [false, (JSON.parse(first.stdout) as { digest: string }).digest], 'a miss, rebuilt to the same layer');
    const hit = await runCli(['build', file, '--import-path', 'example.com/a'], env);
    assert.equal((JSON.parse(hit.stdout) as { cached: boolean }).cached, true);
    mkdirSync(join(env.KOCACHE, 'index-v5', 'ab', 'cd', 'ef'), { recursive: true });
    for (const args of [['ls'], ['gc']]) {
      const r = await runCli(args, env);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    assert.equal(existsSync(join(env.KOCACHE, 'index-v5', 'ab', 'cd', 'ef')), false);
  });

  test('a full disk is one line naming the cache and what to do', () => {
    const dir = newDir();
    const file = join(dir, 'big');
    writeFileSync(file, randomBytes(3_000_000));
    const mnt = join(dir, 'small');
    mkdirSync(mnt);
    // A 1 MiB file system of its own, in a private mount namespace that ends with the command.
    const ns = process.getuid?.() === 0 ? ['-m'] : ['-r', '-m'];
    const script = `mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" build "$3" --import-path example.com/big`;
    const r = spawnSync('unshare', [...ns, 'sh', '-c', script, 'sh', mnt, CLI, file], {
      env: { ...process.env, CI: 'true', KOCACHE: join(mnt, 'cache') },
      encoding: 'utf8',
    });
    assert.equal(r.error, undefined);
    const res = { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
    assert.ok(isOneLineError(res), r.stderr);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${join(mnt, 'cache')}.*no space left on the device; free some space`));
    assert.equal(r.stderr.split('kocache gc --max-size').length, 2, `the advice said once: ${r.stderr}`);
  });

  test('leases and a gc lock kocache did not write do not stop gc', async () => {
    const dir = newDir();
    const env = { KOCACHE: join(dir, 'cache') };
    const file = join(dir, 'a');
    writeFileSync(file, randomBytes(50_000));
    const built = await runCli(['build', file, '--import-path', 'example.com/a'], env);
    assert.equal(built.code, 0, built.stderr);
    const old = new Date(Date.now() - 2 * HOUR);
    utimesSync(new CacheStore(env.KOCACHE).blobPath((JSON.parse(built.stdout) as { digest: Digest }).digest), old, old);
    const leases = join(env.KOCACHE, 'leases');
    mkdirSync(leases, { recursive: true });
    // pid 1 always runs, but it is no kocache: a lease naming it, one with a name and content
    // kocache never writes, and a gc lock naming it.
    const fakes = {
      [join(leases, '1-00000000.json')]: JSON.stringify({ pid: 1, hostname: hostname(), start: 0, command: 'build' }),
      [join(leases, 'garbage')]: 'not a lease',
      [join(env.KOCACHE, 'gc.lock')]: JSON.stringify({ pid: 1, hostname: hostname(), start: 0, command: 'gc' }),
    };
    for (const [path, text] of Object.entries(fakes)) {
      writeFileSync(path, text);
      utimesSync(path, old, old);
    }
    const gc = await runCli(['gc', '--max-size', '0', '--json'], env);
    assert.equal(gc.code, 0, gc.stderr);
    const out = JSON.parse(gc.stdout) as { counts: Record<string, number> };
    assert.ok(out.counts.blob! > 0, 'content was evicted');
    assert.equal(out.counts.lease, 2);
    for (const path of Object.keys(fakes)) assert.equal(existsSync(path), false, path);
  });
});
