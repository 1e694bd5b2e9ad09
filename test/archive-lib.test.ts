import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, test } from 'node:test';
import {
  DEFAULT_GZIP, type GzipOptions, KocacheError, MediaType, type OpenCache, RegistryClient, archivePushable, loadArchive, openCache, parsePlatform, parseReference,
  publish, pushImage, sha256Digest, writeLayout,
} from '../src/index.js';
import { zstdUnavailable } from '../src/compress/zstd.js';
import { makeDockerArchive, standardLayers } from './helpers/archives.js';
import { tempDir } from './helpers/cli.js';
import { appTree, skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

// An image archive pushed from the library, with nothing but the exports of src/index.ts:
// loadArchive, then archivePushable for what pushImage and writeLayout take.
describe('loadArchive() and pushImage() from the library', () => {
  let reg: RunningRegistry;
  let work: string;
  let cache: OpenCache;
  let client: RegistryClient;
  before(async () => {
    reg = await startRegistry();
    work = tempDir('kocache-archive-lib-');
    mkdirSync(join(work, 'src'));
    appTree(join(work, 'src'));
    cache = openCache(join(work, 'cache'));
    client = new RegistryClient({ cache });
  });
  after(async () => {
    await client?.close();
    cache?.close();
    await reg?.stop();
  });

  for (const kind of ['docker-archive', 'oci'] as const) {
    test(`a ${kind} is pushed and written as a layout; skopeo reads back the same digest`, async () => {
      const path = join(work, kind === 'oci' ? 'layout' : 'image.tar');
      const made = await publish({
        cache, base: 'scratch', layers: ['app:/app', 'etc:/etc/app'], cwd: join(work, 'src'),
        output: kind === 'oci' ? { kind, path, tag: 'v1' } : { kind, path },
        platforms: kind === 'oci' ? [parsePlatform('linux/amd64'), parsePlatform('linux/arm64')] : undefined,
      });
      const loaded = await loadArchive(path, { cache, gzip: DEFAULT_GZIP, jobs: 2 });
      const image = await archivePushable(cache, loaded.image);
      assert.equal(image.descriptor.digest, made.digest, 'the archive imports as the image written into it');

      const pushed = await pushImage(client, parseReference(`${reg.host}/lib/${kind}:v1`), image);
      assert.equal(pushed.digest, made.digest);
      const raw = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/lib/${kind}:v1`);
      assert.equal(sha256Digest(raw), made.digest, 'the registry holds the exact manifest');

      const layout = join(work, `${kind}-copy`);
      await writeLayout(layout, image, { refName: 'copy' });
      assert.equal(sha256Digest(await skopeo('inspect', '--raw', `oci:${layout}:copy`)), made.digest);
    });
  }

  // The layers that come plain are compressed with the settings asked for: zstd too, at its levels.
  test('plain layers compressed with zstd when asked; gzip and zstd of one level are two cache entries', async () => {
    const archive = makeDockerArchive(join(work, 'plain'), standardLayers()).path;
    const zstd = { ...DEFAULT_GZIP, algorithm: 'zstd' as const, level: 12 };
    if (zstdUnavailable()) {
      await assert.rejects(loadArchive(archive, { cache, gzip: zstd, jobs: 2 }), (e) => e instanceof KocacheError && /zstd layers need Node\.js/.test(e.message));
      return;
    }
    const mediaTypes = async (gzip: GzipOptions) => {
      const loaded = await loadArchive(archive, { cache, gzip, jobs: 2 });
      return loaded.image.kind === 'manifest' ? loaded.image.manifest.layers.map((l) => l.descriptor.mediaType) : [];
    };
    const loaded = await loadArchive(archive, { cache, gzip: zstd, jobs: 2 });
    const image = await archivePushable(cache, loaded.image);
    assert.ok(image.kind === 'manifest');
    const made = image.layers.filter((l) => l.descriptor.mediaType === MediaType.OciLayerZstd);
    assert.ok(made.length > 0, 'some layers came plain and were compressed');
    for (const l of made) {
      // What zstd -d makes of the blob is one of the image's layer tars.
      const tar = execFileSync('zstd', ['-dc'], { input: await buffer(l.open()), maxBuffer: 64 << 20 });
      assert.ok(loaded.image.kind === 'manifest' && loaded.image.manifest.layers.some((a) => a.diffid === sha256Digest(tar)));
    }
    const pushed = await pushImage(client, parseReference(`${reg.host}/lib/zstd:v1`), image);
    const raw = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/lib/zstd:v1`);
    assert.equal(sha256Digest(raw), pushed.digest);

    assert.ok(!(await mediaTypes({ ...DEFAULT_GZIP, level: 3 })).includes(MediaType.OciLayerZstd));
    assert.deepEqual(await mediaTypes({ ...zstd, level: 3 }), image.layers.map((l) => l.descriptor.mediaType), 'gzip at level 3 does not answer for zstd at level 3');
  });
});
