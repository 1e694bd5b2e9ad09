import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DEFAULT_GZIP, type OpenCache, RegistryClient, archivePushable, loadArchive, openCache, parsePlatform, parseReference,
  publish, pushImage, sha256Digest, writeLayout,
} from '../src/index.js';
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
});
