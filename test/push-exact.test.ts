import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { configFor, makeLayerTar } from './helpers/archives.js';
import { runCli, tempDir } from './helpers/cli.js';
import { skopeoPath, startRegistry, type RunningRegistry } from './helpers/registry.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let reg: RunningRegistry;
let dir: string;
before(async () => {
  reg = await startRegistry();
  dir = tempDir('kocache-exact-');
});
after(async () => {
  await reg.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a layout manifest that is not valid UTF-8 is pushed byte for byte, under its own digest', async () => {
  const layout = join(dir, 'layout');
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  const put = (b: Buffer) => {
    writeFileSync(join(layout, 'blobs', 'sha256', sha256(b).slice(7)), b);
    return sha256(b);
  };
  const tar = makeLayerTar(dir, 'l', { 'a.txt': 'a\n' });
  const layer = gzipSync(tar.bytes);
  const config = configFor([tar.diffid]);
  const json = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: put(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: put(layer), size: layer.length }],
    annotations: { note: '@' },
  });
  // A Latin-1 byte where UTF-8 was expected: JSON parsers take it, and its digest is over these bytes.
  const manifest = Buffer.from(json, 'latin1');
  manifest[manifest.indexOf('@')] = 0xe9;
  const digest = put(manifest);
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: manifest.length }] }));

  const r = await runCli(['push', '--json', layout, `${reg.host}/exact/app:v1`], { KOCACHE: join(dir, 'cache') });
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { images: { digest: string }[] }).images[0]!.digest, digest);
  const raw = execFileSync(skopeoPath(), ['inspect', '--tls-verify=false', '--raw', `docker://${reg.host}/exact/app:v1`]);
  assert.ok(raw.equals(manifest), 'the registry holds the archive manifest, byte for byte');
});
