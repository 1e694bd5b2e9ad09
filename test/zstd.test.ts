import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { zstdUnavailable } from '../src/compress/zstd.js';
import { MediaType } from '../src/oci/mediatypes.js';
import { type BuildOut, isOneLineError, runCli, tempDir } from './helpers/cli.js';
import { makeDockerArchive, someBytes, tarLayout } from './helpers/archives.js';
import { readDirManifest, skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

/** Text and pseudo-random bytes over several zstd frames, and small files. */
function tree(root: string): string {
  const src = join(root, 'src');
  mkdirSync(join(src, 'lib'), { recursive: true });
  const random = Buffer.alloc(3 << 20);
  for (let off = 0, i = 0; off < random.length; i++) off += createHash('sha256').update(`z ${i}`).digest().copy(random, off);
  writeFileSync(join(src, 'lib', 'random.bin'), random);
  writeFileSync(join(src, 'lib', 'text.txt'), Array.from({ length: 900_000 }, (_, i) => `w${(i * 7919) % 3001}${i % 13 ? ' ' : '\n'}`).join(''));
  for (let i = 0; i < 30; i++) writeFileSync(join(src, `f${i}.txt`), `file ${i}\n`.repeat(i * 10 + 1));
  return src;
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

if (zstdUnavailable()) {
  test('without zstd in node:zlib, --compression zstd is one line naming the Node version it needs', async () => {
    const dir = tempDir();
    const src = tree(dir);
    const r = await runCli(['build', `${src}:/app`, '--import-path', 'example.com/z', '--compression', 'zstd'], { KOCACHE: join(dir, 'cache') });
    assert.equal(r.code, 2);
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, /zstd layers need Node\.js 22\.15 or newer \(this is Node\.js 20\.\d+\.\d+\)/);
    // Nothing was built or recorded: gzip still works in the same cache.
    const g = await runCli(['build', `${src}:/app`, '--import-path', 'example.com/z'], { KOCACHE: join(dir, 'cache') });
    assert.equal(g.code, 0, g.stderr);
  });
} else {
  describe('zstd layers', () => {
    let reg: RunningRegistry;
    let dir: string;
    let src: string;
    let env: Record<string, string>;
    before(async () => {
      reg = await startRegistry();
      dir = tempDir();
      src = tree(dir);
      env = { KOCACHE: join(dir, 'cache') };
    });
    after(async () => {
      await reg?.stop();
    });

    const build = async (extra: string[], e = env) => {
      const r = await runCli(['build', `${src}:/app`, '--import-path', 'example.com/z', ...extra], e);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as BuildOut;
    };

    test('a zstd layer: its media type, smaller than the gzip one at default settings, bytes independent of --jobs, its own cache key', async () => {
      const zstd = await build(['--compression', 'zstd', '--jobs', '1']);
      assert.equal(zstd.mediaType, MediaType.OciLayerZstd);
      assert.equal(zstd.cached, false);
      const gzip = await build([]);
      assert.equal(gzip.mediaType, MediaType.OciLayerGzip);
      assert.equal(gzip.cached, false, 'gzip is another key than zstd');
      assert.equal(gzip.diffid, zstd.diffid);
      assert.ok(zstd.size < gzip.size, `zstd ${zstd.size} bytes, gzip ${gzip.size}`);
      const again = await build(['--compression', 'zstd', '--jobs', '3']);
      assert.deepEqual(again, { ...zstd, cached: true });
      const other = await build(['--compression', 'zstd', '--jobs', '3'], { KOCACHE: join(dir, 'cache-jobs3') });
      assert.deepEqual(other, zstd, 'the same bytes with 3 jobs as with 1');
      const level = await build(['--compression', 'zstd', '--level', '9']);
      assert.equal(level.cached, false, 'the level is part of the key');
      assert.notEqual(level.digest, zstd.digest);
    });

    test('bad levels for zstd are one line, exit 2', async () => {
      for (const bad of ['0', '20', '2.5']) {
        const r = await runCli(['build', `${src}:/app`, '--import-path', 'example.com/z', '--compression', 'zstd', '--level', bad], env);
        assert.equal(r.code, 2, r.stderr);
        assert.ok(isOneLineError(r), r.stderr);
        assert.match(r.stderr, /--level must be a whole number from 1 to 19 for zstd/);
      }
    });

    test('published: an OCI manifest skopeo copies (checking every digest), and zstd -d of the blob gives the diffid', async () => {
      const r = await runCli(['publish', '--json', `${src}:/app`, '--base', 'scratch', '--repo', `${reg.host}/zstd:v1`, '--compression', 'zstd'], env);
      assert.equal(r.code, 0, r.stderr);
      const out = join(dir, 'copied');
      await skopeo('copy', '--src-tls-verify=false', `docker://${reg.host}/zstd:v1`, `dir:${out}`);
      const { manifest, config } = readDirManifest(out);
      const m = manifest as { mediaType: string; layers: { mediaType: string; digest: string }[] };
      assert.equal(m.mediaType, MediaType.OciManifest);
      assert.equal(m.layers.length, 1);
      assert.equal(m.layers[0]!.mediaType, MediaType.OciLayerZstd);
      const blob = join(out, m.layers[0]!.digest.replace('sha256:', ''));
      const tar = execFileSync('zstd', ['-d', '-c', blob], { maxBuffer: 1 << 30 });
      assert.equal(sha256(tar), (config as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids[0]);
      assert.equal(sha256(readFileSync(blob)), m.layers[0]!.digest);
    });

    test('a base image with zstd layers works in publish and warm', async () => {
      const base = `${reg.host}/zstd-base:v1`;
      const made = await runCli(['publish', `${src}:/base`, '--base', 'scratch', '--repo', base, '--compression', 'zstd'], env);
      assert.equal(made.code, 0, made.stderr);
      const warmed = await runCli(['warm', base], { KOCACHE: join(dir, 'cache-warm') });
      assert.equal(warmed.code, 0, warmed.stderr);
      const app = join(dir, 'app');
      mkdirSync(app);
      writeFileSync(join(app, 'run.sh'), '#!/bin/sh\necho hi\n');
      const r = await runCli(['publish', `${app}:/app`, '--base', base, '--repo', `${reg.host}/on-zstd:v1`], { KOCACHE: join(dir, 'cache-warm') });
      assert.equal(r.code, 0, r.stderr);
      const out = join(dir, 'on-zstd');
      await skopeo('copy', '--src-tls-verify=false', `docker://${reg.host}/on-zstd:v1`, `dir:${out}`);
      const m = readDirManifest(out).manifest as { mediaType: string; layers: { mediaType: string }[] };
      assert.equal(m.mediaType, MediaType.OciManifest);
      assert.deepEqual(m.layers.map((l) => l.mediaType), [MediaType.OciLayerZstd, MediaType.OciLayerGzip]);
    });
  });
}

/** An OCI layout whose layers skopeo compressed with zstd: one streamed (> 64 KiB), one held. */
async function zstdLayout(dir: string): Promise<{ layout: string; manifest: string }> {
  const archive = makeDockerArchive(dir, [{ files: { 'big.bin': someBytes(400_000, 'zstd') } }, { files: { 'small.txt': 'small\n' } }]);
  const layout = join(dir, 'zstd-layout');
  await skopeo('copy', '--quiet', '--dest-compress-format', 'zstd', `docker-archive:${archive.path}`, `oci:${layout}:v1`);
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  return { layout, manifest: index.manifests[0]!.digest };
}

describe('kocache push of archives whose layers are zstd', () => {
  let reg: RunningRegistry;
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg?.stop();
  });

  test(zstdUnavailable() ? 'without zstd in node:zlib: one line naming the Node version it needs' : 'pushed as they are, from a layout and from an OCI archive', async () => {
    const dir = tempDir();
    const { layout, manifest } = await zstdLayout(dir);
    const m = JSON.parse(readFileSync(join(layout, 'blobs', 'sha256', manifest.slice(7)), 'utf8')) as { layers: { mediaType: string }[] };
    assert.deepEqual(m.layers.map((l) => l.mediaType), [MediaType.OciLayerZstd, MediaType.OciLayerZstd]);
    const oci = tarLayout(layout, join(dir, 'zstd-oci.tar'));
    for (const [source, repo] of [[layout, 'from-layout'], [oci, 'from-archive']] as const) {
      const r = await runCli(['push', '--json', source, `${reg.host}/${repo}:v1`], { KOCACHE: join(dir, `cache-${repo}`) });
      if (zstdUnavailable()) {
        assert.equal(r.code === 0, false);
        assert.ok(isOneLineError(r), r.stderr);
        assert.match(r.stderr, /is a zstd layer: zstd layers need Node\.js 22\.15 or newer/);
        continue;
      }
      assert.equal(r.code, 0, r.stderr);
      // The manifest is the archive's own: nothing recompressed.
      const raw = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/${repo}:v1`);
      assert.equal(sha256(Buffer.from(raw)), manifest);
      await skopeo('copy', '--quiet', '--src-tls-verify=false', `docker://${reg.host}/${repo}:v1`, `dir:${join(dir, `copy-${repo}`)}`);
    }
  });

  test('a layer declared zstd that is not, or zstd declared gzip, is refused naming the layer', async () => {
    const dir = tempDir();
    const { layout, manifest } = await zstdLayout(dir);
    const file = join(layout, 'blobs', 'sha256', manifest.slice(7));
    const text = readFileSync(file, 'utf8').replaceAll(MediaType.OciLayerZstd, MediaType.OciLayerGzip);
    const digest = sha256(Buffer.from(text));
    writeFileSync(join(layout, 'blobs', 'sha256', digest.slice(7)), text);
    const indexFile = join(layout, 'index.json');
    writeFileSync(indexFile, readFileSync(indexFile, 'utf8').replace(manifest, digest).replace(/"size":\d+/, `"size":${Buffer.byteLength(text)}`));
    const r = await runCli(['push', layout, `${reg.host}/bad:v1`], { KOCACHE: join(dir, 'cache') });
    assert.equal(r.code === 0, false);
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, /is declared application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip but is not gzip/);
  });
});
