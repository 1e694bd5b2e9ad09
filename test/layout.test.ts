import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { bytesBlob } from '../src/image/blobs.js';
import type { PushableManifest } from '../src/oci/pushable.js';
import { writeLayout } from '../src/layout/write.js';
import { writeDockerArchive } from '../src/tarball/write.js';
import { sha256Digest } from '../src/oci/digest.js';
import type { ImageConfig, ImageIndex, ImageManifest } from '../src/oci/manifest.js';
import { MediaType } from '../src/oci/mediatypes.js';
import { isOneLineError, runCli, tempDir } from './helpers/cli.js';
import { appTree, readDirManifest, skopeo } from './helpers/image-fixtures.js';

interface WriteJson {
  output: string;
  reference: string;
  digest: string;
  written?: number;
  present?: number;
  imageId?: string;
}

// A registry that refuses connections: an --output publish on scratch that touched the network
// would fail on it.
const NOWHERE = '127.0.0.1:1';

function setup(): { dir: string; env: Record<string, string> } {
  const dir = tempDir('kocache-layout-');
  appTree(dir);
  return { dir, env: { KOCACHE: join(dir, 'cache') } };
}

async function publishTo(dir: string, env: Record<string, string>, output: string, extra: string[] = []): Promise<WriteJson> {
  const r = await runCli(['publish', '--json', 'app:/app', 'etc:/etc/app', '--base', 'scratch', '--entrypoint', '/app', '--output', output, ...extra], env, { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as WriteJson;
}

function fileHash(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

test('--output oci:DIR writes a layout skopeo reads and copies, without any registry', async () => {
  const { dir, env } = setup();
  const res = await publishTo(dir, env, 'oci:image', ['--repo', `${NOWHERE}/app:v1`]);
  assert.equal(res.reference, `${NOWHERE}/app@${res.digest}`);
  const layout = join(dir, 'image');
  assert.deepEqual(JSON.parse(readFileSync(join(layout, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as ImageIndex;
  assert.equal(index.manifests.length, 1);
  assert.equal(index.manifests[0]!.digest, res.digest);
  assert.equal(index.manifests[0]!.annotations?.['org.opencontainers.image.ref.name'], 'v1');
  assert.equal(index.manifests[0]!.annotations?.['io.containerd.image.name'], `${NOWHERE}/app:v1`);
  // Every blob file is named by the hash of its bytes.
  for (const name of readdirSync(join(layout, 'blobs', 'sha256'))) {
    assert.equal(fileHash(join(layout, 'blobs', 'sha256', name)), name);
  }

  const raw = await skopeo('inspect', '--raw', `oci:${layout}:v1`);
  assert.equal(sha256Digest(raw), res.digest);
  const inspect = JSON.parse(await skopeo('inspect', `oci:${layout}:v1`)) as { Layers: string[]; Architecture: string };
  assert.equal(inspect.Layers.length, 2);
  assert.equal(inspect.Architecture, 'amd64');
  const out = join(dir, 'copied');
  await skopeo('copy', `oci:${layout}:v1`, `dir:${out}`);
  const config = readDirManifest(out).config as unknown as ImageConfig;
  assert.deepEqual(config.config?.Entrypoint, ['/app']);
  assert.equal(config.rootfs.diff_ids.length, 2);

  // Again: same digest, nothing rewritten, still one entry for the tag.
  const again = await publishTo(dir, env, 'oci:image', ['--repo', `${NOWHERE}/app:v1`]);
  assert.equal(again.digest, res.digest);
  assert.equal(again.written, 0);
  assert.equal((JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as ImageIndex).manifests.length, 1);

  // Another tag into the same layout adds an entry and keeps the first.
  const other = await publishTo(dir, env, 'oci:image', ['--repo', `${NOWHERE}/app:v2`, '--env', 'X=1']);
  const names = (JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as ImageIndex).manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']);
  assert.deepEqual(names, ['v1', 'v2']);
  assert.notEqual(other.digest, res.digest);
});

test('--output oci:DIR with several platforms writes an index skopeo picks a platform from', async () => {
  const dir = tempDir('kocache-layout-');
  for (const arch of ['amd64', 'arm64']) {
    mkdirSync(join(dir, arch));
    writeFileSync(join(dir, arch, 'app'), `app for ${arch}\n`);
  }
  const r = await runCli(
    ['publish', '--json', '{arch}/app:/app', '--base', 'scratch', '--platform', 'linux/amd64', '--platform', 'linux/arm64', '--output', 'oci:out'],
    { KOCACHE: join(dir, 'cache') }, { cwd: dir },
  );
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as WriteJson;
  assert.equal(res.reference, res.digest, 'without --repo the result is the bare digest');
  const top = (JSON.parse(readFileSync(join(dir, 'out', 'index.json'), 'utf8')) as ImageIndex).manifests[0]!;
  assert.equal(top.mediaType, MediaType.OciIndex);
  const inner = JSON.parse(readFileSync(join(dir, 'out', 'blobs', 'sha256', top.digest.slice(7)), 'utf8')) as ImageIndex;
  assert.deepEqual(inner.manifests.map((m) => m.platform?.architecture), ['amd64', 'arm64']);
  const arm = JSON.parse(await skopeo('inspect', '--override-arch', 'arm64', `oci:${join(dir, 'out')}`)) as { Architecture: string };
  assert.equal(arm.Architecture, 'arm64');
});

test('--output docker-archive:FILE writes a tar skopeo reads; the same inputs give the same bytes', async () => {
  const { dir, env } = setup();
  const res = await publishTo(dir, env, 'docker-archive:image.tar', ['--repo', `${NOWHERE}/app:v1`, '--platform', 'linux/arm64']);
  const file = join(dir, 'image.tar');
  const manifest = JSON.parse(execFileSync('tar', ['-xOf', file, 'manifest.json'], { encoding: 'utf8' })) as { Config: string; RepoTags: string[]; Layers: string[] }[];
  assert.equal(manifest.length, 1);
  assert.deepEqual(manifest[0]!.RepoTags, [`${NOWHERE}/app:v1`]);
  assert.equal(manifest[0]!.Layers.length, 2);
  assert.equal(`sha256:${manifest[0]!.Config.split('/').pop()}`, res.imageId);

  const inspect = JSON.parse(await skopeo('inspect', `docker-archive:${file}`)) as { Layers: string[]; Architecture: string };
  assert.equal(inspect.Architecture, 'arm64');
  assert.equal(inspect.Layers.length, 2);
  const out = join(dir, 'copied');
  await skopeo('copy', `docker-archive:${file}`, `dir:${out}`);
  const config = readDirManifest(out).config as unknown as ImageConfig;
  assert.deepEqual(config.config?.Entrypoint, ['/app']);

  const first = fileHash(file);
  const again = await publishTo(dir, env, 'docker-archive:image.tar', ['--repo', `${NOWHERE}/app:v1`, '--platform', 'linux/arm64']);
  assert.equal(again.digest, res.digest);
  assert.equal(fileHash(file), first, 'byte-identical archive');
  assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp-')), [], 'no temp files left');
});

test('writing fails cleanly: unwritable target, blob bytes that do not match their digest', async () => {
  const { dir, env } = setup();
  writeFileSync(join(dir, 'file'), 'x');
  const r = await runCli(['publish', 'app:/app', '--base', 'scratch', '--output', 'oci:file/sub'], env, { cwd: dir });
  assert.ok(isOneLineError(r), r.stderr);
  assert.match(r.stderr, /file\/sub/);

  // A blob source that lies about its digest must not land in a layout or an archive.
  const good = bytesBlob(MediaType.OciLayerGzip, Buffer.from('real'));
  const liar = { descriptor: { ...good.descriptor, digest: sha256Digest('other') }, open: good.open };
  const config = bytesBlob(MediaType.OciConfig, Buffer.from('{}'));
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: config.descriptor, layers: [liar.descriptor] };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const image: PushableManifest = { kind: 'manifest', bytes, descriptor: bytesBlob(MediaType.OciManifest, bytes).descriptor, config, layers: [liar] };
  await assert.rejects(writeLayout(join(dir, 'bad-layout'), image), /came out as/);
  assert.ok(!existsSync(join(dir, 'bad-layout', 'blobs', 'sha256', sha256Digest('other').slice(7))));
  assert.ok(!existsSync(join(dir, 'bad-layout', 'index.json')), 'no index entry for an image whose blobs are not all there');
  await assert.rejects(writeDockerArchive(join(dir, 'bad.tar'), image), /came out as/);
  assert.ok(!existsSync(join(dir, 'bad.tar')));
  assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp-')), []);
});

test('a corrupt blob already in a layout is replaced, not trusted', async () => {
  const { dir, env } = setup();
  const res = await publishTo(dir, env, 'oci:image');
  const blobs = join(dir, 'image', 'blobs', 'sha256');
  const m = JSON.parse(readFileSync(join(blobs, res.digest.slice(7)), 'utf8')) as ImageManifest;
  const victim = join(blobs, m.layers[0]!.digest.slice(7));
  const bytes = readFileSync(victim);
  bytes[bytes.length - 1]! ^= 0xff;
  writeFileSync(victim, bytes);
  const again = await publishTo(dir, env, 'oci:image');
  assert.equal(again.written, 1);
  assert.equal(fileHash(victim), m.layers[0]!.digest.slice(7));
});

test('the image digest depends on the inputs only: a fresh cache and another folder give the same digest', async () => {
  const { dir, env } = setup();
  const first = await publishTo(dir, env, 'oci:one', ['--repo', `${NOWHERE}/app:v1`]);
  const second = await publishTo(dir, { KOCACHE: join(dir, 'cache-2') }, 'oci:two', ['--repo', `${NOWHERE}/app:v1`, '--jobs', '1']);
  assert.equal(second.digest, first.digest);
  const dated = await publishTo(dir, { ...env, SOURCE_DATE_EPOCH: '1700000000' }, 'oci:three');
  assert.notEqual(dated.digest, first.digest);
  const config = JSON.parse(await skopeo('inspect', '--config', `oci:${join(dir, 'three')}`)) as ImageConfig;
  assert.equal(config.created, '2023-11-14T22:13:20Z');
});
