import assert from 'node:assert/strict';
import { cachedDataVersionTag } from 'node:v8';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { makeDockerArchive, makeOciLayout, standardLayers, tarLayout, type MadeArchive } from './helpers/archives.js';
import { isOneLineError, runCli, tempDir, traceOf } from './helpers/cli.js';
import { freePort, skopeoPath, startRegistry, type RunningRegistry } from './helpers/registry.js';

interface Manifest {
  mediaType: string;
  config: { mediaType: string; digest: string; size: number };
  layers: { mediaType: string; digest: string; size: number }[];
}
interface Config { rootfs: { diff_ids: string[] } }
interface PushJson { images: { archive: string; reference: string; digest: string }[]; uploaded: number; mounted: number; present: number; bytesUploaded: number }

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let reg: RunningRegistry;
let dir: string;
let archive: MadeArchive;
const cleanup: string[] = [];

before(async () => {
  reg = await startRegistry();
  dir = tempDir('kocache-push-');
  cleanup.push(dir);
  archive = makeDockerArchive(dir, standardLayers(), { gzip: 'multi-member' });
});
after(async () => {
  await reg.stop();
  for (const d of cleanup) rmSync(d, { recursive: true, force: true });
});

function skopeo(...args: string[]): Buffer {
  return execFileSync(skopeoPath(), args, { maxBuffer: 64 << 20 });
}

function inspect(ref: string): { manifest: Manifest; configBytes: Buffer } {
  const manifest = JSON.parse(skopeo('inspect', '--tls-verify=false', '--raw', `docker://${ref}`).toString()) as Manifest;
  const configBytes = skopeo('inspect', '--tls-verify=false', '--config', '--raw', `docker://${ref}`);
  return { manifest, configBytes };
}

/** Copies the image out with skopeo (which verifies every digest) and returns the diffids of its layers. */
function copiedDiffIds(ref: string): string[] {
  const out = join(tempDir('kocache-skopeo-'), 'image');
  cleanup.push(out);
  skopeo('copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `dir:${out}`);
  const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest;
  return manifest.layers.map((l) => sha256(gunzipSync(readFileSync(join(out, l.digest.slice('sha256:'.length))))));
}

async function push(cache: string, ...args: string[]) {
  const r = await runCli(['push', ...args], { KOCACHE: cache, KOCACHE_TRACE: '1' });
  return { ...r, trace: r.code === 0 ? traceOf(r.stderr) : {} };
}

describe('push ARCHIVE REF', () => {
  const cache = () => join(dir, 'cache');

  test('a gzipped docker-archive: one inflate, config byte-identical, OCI gzip layers with the archive diffids', async () => {
    const r = await push(cache(), archive.path, `${reg.host}/nix/app:v1`);
    assert.equal(r.code, 0, r.stderr);
    const last = r.stdout.trimEnd().split('\n').pop()!;
    assert.match(last, new RegExp(`^${reg.host.replace(/\./g, '\\.')}/nix/app@sha256:[0-9a-f]{64}$`));
    assert.equal(r.trace['inflate.archive'], archive.tarSize);
    // The HTTP parser kept on V8's baseline compiler (src/cli/wasm.ts), set by the command itself.
    assert.equal(r.trace['wasm.baseline'], 1);
    assert.notEqual(r.trace['v8.tag'], cachedDataVersionTag(), 'the flag took effect');
    assert.equal(r.trace['inflate.layer'], archive.gzippedLayerTarBytes);
    assert.equal(r.trace['gzip.in'], archive.plainLayerTarBytes);
    // Blobs from the content store are checked by its read as they are uploaded, not a second time.
    assert.ok((r.trace['blob.verify'] ?? 0) > 0);
    assert.equal(r.trace['upload.check'] ?? 0, 0);

    const { manifest, configBytes } = inspect(`${reg.host}/nix/app:v1`);
    assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(`${reg.host}/nix/app@${sha256(Buffer.from(skopeo('inspect', '--tls-verify=false', '--raw', `docker://${reg.host}/nix/app:v1`)))}`, last);
    assert.ok(configBytes.equals(archive.config), 'config pushed byte for byte (same image ID)');
    assert.equal(manifest.config.digest, sha256(archive.config));
    assert.ok(manifest.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+gzip'));
    assert.deepEqual(copiedDiffIds(`${reg.host}/nix/app:v1`), archive.diffIds);
    assert.deepEqual((JSON.parse(configBytes.toString()) as Config).rootfs.diff_ids, archive.diffIds);
  });

  test('a second push of the same archive uploads nothing, inflates nothing, compresses nothing', async () => {
    const before = reg.uploadsStarted('nix/app');
    const heads = reg.requests('HEAD', /^\/v2\/nix\/app\/blobs\//);
    const puts = reg.requests('PUT', /^\/v2\/nix\/app\/manifests\//);
    const r = await push(cache(), archive.path, `${reg.host}/nix/app:v1`, '--json');
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as PushJson;
    assert.equal(reg.uploadsStarted('nix/app'), before);
    // The tag already names this very image: the registry accepted it with all its blobs.
    assert.equal(reg.requests('HEAD', /^\/v2\/nix\/app\/blobs\//), heads, 'no blob was even asked about');
    assert.equal(reg.requests('PUT', /^\/v2\/nix\/app\/manifests\//), puts, 'no manifest put again');
    assert.equal(out.uploaded, 0);
    assert.equal(out.present, 5, 'the four distinct layers and the config were all there already');
    assert.equal(r.trace['inflate.archive'] ?? 0, 0);
    assert.equal(r.trace['inflate.layer'] ?? 0, 0);
    assert.equal(r.trace['gzip.in'] ?? 0, 0);
  });

  test('--json prints the reference, digest and counts', async () => {
    const r = await push(join(dir, 'cache-json'), archive.tarPath, `${reg.host}/json/app:v2`, '--json');
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as PushJson;
    assert.equal(out.images.length, 1);
    const [image] = out.images;
    assert.match(image!.digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(image!.reference, `${reg.host}/json/app@${image!.digest}`);
    assert.equal(out.uploaded + out.mounted + out.present, 5);
    // A plain archive inflates nothing at the archive level.
    assert.equal(r.trace['inflate.archive'] ?? 0, 0);
  });

  test('an OCI archive (gzipped tar of a skopeo layout) and the layout directory push the same image', async () => {
    const small = makeDockerArchive(tempDir('kocache-oci-'), standardLayers().slice(0, 4));
    const layout = makeOciLayout(small.tarPath, dir);
    const ociTar = tarLayout(layout, join(dir, 'oci.tar'), true);

    const fromTar = await push(join(dir, 'cache-oci'), ociTar, `${reg.host}/oci/tarred:v1`);
    assert.equal(fromTar.code, 0, fromTar.stderr);
    const fromDir = await push(join(dir, 'cache-oci-2'), layout, `${reg.host}/oci/dir:v1`);
    assert.equal(fromDir.code, 0, fromDir.stderr);
    const digestOf = (s: string) => s.trimEnd().split('\n').pop()!.split('@')[1];
    assert.equal(digestOf(fromTar.stdout), digestOf(fromDir.stdout));

    for (const ref of [`${reg.host}/oci/tarred:v1`, `${reg.host}/oci/dir:v1`]) {
      const { manifest, configBytes } = inspect(ref);
      const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
      const layoutManifest = JSON.parse(readFileSync(join(layout, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as Manifest;
      const layoutConfig = readFileSync(join(layout, 'blobs/sha256', layoutManifest.config.digest.slice(7)));
      assert.ok(configBytes.equals(layoutConfig), 'config byte-identical to the layout config');
      assert.ok(manifest.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+gzip'));
      const diffIds = (JSON.parse(configBytes.toString()) as Config).rootfs.diff_ids;
      assert.deepEqual(diffIds, small.diffIds);
      assert.deepEqual(copiedDiffIds(ref), diffIds);
    }
  });

  test('a multi-platform OCI layout is pushed as an index whose images carry the archive diffids', async () => {
    const work = tempDir('kocache-multi-');
    cleanup.push(work);
    const amd = makeDockerArchive(join(work, 'amd'), standardLayers().slice(0, 2), { architecture: 'amd64' });
    const arm = makeDockerArchive(join(work, 'arm'), standardLayers().slice(2, 4), { architecture: 'arm64' });
    // Both images in one layout (skopeo adds each under its tag), then platforms written in.
    const layout = makeOciLayout(amd.tarPath, work, 'amd64');
    makeOciLayout(arm.tarPath, work, 'arm64');
    const indexPath = join(layout, 'index.json');
    const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { manifests: { annotations?: Record<string, string>; platform?: object }[] };
    assert.equal(index.manifests.length, 2);
    for (const m of index.manifests) {
      m.platform = { os: 'linux', architecture: m.annotations?.['org.opencontainers.image.ref.name'] ?? 'unknown' };
    }
    writeFileSync(indexPath, JSON.stringify(index));

    const r = await push(join(dir, 'cache-multi'), layout, `${reg.host}/multi/app:v1`);
    assert.equal(r.code, 0, r.stderr);
    const pushed = JSON.parse(skopeo('inspect', '--tls-verify=false', '--raw', `docker://${reg.host}/multi/app:v1`).toString()) as {
      mediaType: string;
      manifests: { digest: string; platform: { architecture: string } }[];
    };
    assert.equal(pushed.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(pushed.manifests.map((m) => m.platform.architecture), ['amd64', 'arm64']);
    for (const [i, want] of [amd, arm].entries()) {
      const ref = `${reg.host}/multi/app@${pushed.manifests[i]!.digest}`;
      assert.deepEqual(copiedDiffIds(ref), want.diffIds);
      // skopeo rewrote the docker config for its layout; the push must carry the layout's bytes.
      const layoutManifest = JSON.parse(readFileSync(join(layout, 'blobs/sha256', (index.manifests[i] as { digest: string }).digest.slice(7)), 'utf8')) as Manifest;
      assert.equal(sha256(inspect(ref).configBytes), layoutManifest.config.digest);
    }
  });

  test('--also pushes several archives in parallel, one line each', async () => {
    const other = makeDockerArchive(tempDir('kocache-also-'), standardLayers().slice(1, 3), { gzip: true });
    // Options before the positionals too: --also must not swallow them.
    const r = await push(join(dir, 'cache-also'), '--also', `${other.path}=${reg.host}/also/two:v1`, '--insecure-registry', reg.host, archive.path, `${reg.host}/also/one:v1`);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 2);
    assert.ok(lines[0]!.startsWith(`${reg.host}/also/one@sha256:`));
    assert.ok(lines[1]!.startsWith(`${reg.host}/also/two@sha256:`));
    assert.deepEqual(copiedDiffIds(`${reg.host}/also/two:v1`), other.diffIds);
  });

  test('an unreachable registry is one line', async () => {
    const port = await freePort();
    const r = await runCli(['push', archive.tarPath, `127.0.0.1:${port}/x/y:z`], { KOCACHE: join(dir, 'cache-unreach') });
    assert.ok(isOneLineError(r), r.stderr);
  });

  test('a bad reference or a digest target is a usage error', async () => {
    for (const ref of ['UPPER/Case::x', `${reg.host}/x/y@sha256:${'a'.repeat(64)}`]) {
      const r = await runCli(['push', archive.tarPath, ref], { KOCACHE: join(dir, 'cache-badref') });
      assert.ok(isOneLineError(r), r.stderr);
    }
  });

  test('a bad archive fails before anything is pushed', async () => {
    const r = await runCli(['push', join(dir, 'missing.tar'), `${reg.host}/never/pushed:v1`], { KOCACHE: join(dir, 'cache-bad') });
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, /no such file or directory/);
    assert.equal(reg.requests('POST', /^\/v2\/never\/pushed\//), 0);
    assert.equal(reg.requests('PUT', /^\/v2\/never\/pushed\//), 0);
  });
});
