import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KocacheError, type OpenCache, type PublishProgress, excludeFilter, openCache, parsePlatform, parseReference, publish } from '../src/index.js';
import { sha256Digest } from '../src/oci/digest.js';
import type { ImageConfig, ImageManifest } from '../src/oci/manifest.js';
import { tempDir } from './helpers/cli.js';
import { appTree, readDirManifest, skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

// publish() as a library call: the same pipeline as `kocache publish`, checked with skopeo.
describe('publish() from the library', () => {
  let reg: RunningRegistry;
  let work: string;
  let cache: OpenCache;
  before(async () => {
    reg = await startRegistry();
    work = tempDir('kocache-publish-lib-');
    mkdirSync(join(work, 'src'));
    appTree(join(work, 'src'));
    cache = openCache(join(work, 'cache'));
  });
  after(async () => {
    cache?.close();
    await reg?.stop();
  });

  test('pushes under every tag; skopeo reads back the manifest and config; a second call uploads nothing', async () => {
    const events: PublishProgress[] = [];
    let delivered: string | undefined;
    const options = {
      cache,
      base: 'scratch',
      layers: ['app:/usr/local/bin/app', 'etc:/etc/app'],
      repo: parseReference(`${reg.host}/lib/app`),
      tags: ['v1', 'latest'],
      config: { entrypoint: ['/usr/local/bin/app'], env: [['MODE', 'prod']] as [string, string][] },
      sourceDateEpoch: 1_700_000_000,
      cwd: join(work, 'src'),
      jobs: 2,
    };
    const first = await publish({ ...options, onProgress: (e) => events.push(e), onDelivered: (r) => (delivered = r.digest) });
    assert.equal(delivered, first.digest, 'onDelivered saw the result');
    assert.deepEqual(first.layers, { built: 2, cached: 0, reused: 0 });
    assert.equal(first.uploaded, 3, 'two layers and the config');
    assert.equal(first.reference, `${reg.host}/lib/app@${first.digest}`);
    assert.deepEqual(first.tags, ['v1', 'latest']);

    for (const tag of ['v1', 'latest']) {
      const raw = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/lib/app:${tag}`);
      assert.equal(sha256Digest(raw), first.digest, `${tag}: the exact manifest whose digest publish returned`);
      assert.equal((JSON.parse(raw) as ImageManifest).layers.length, 2);
    }
    // skopeo copy verifies every blob against its digest.
    const out = join(work, 'copied');
    await skopeo('copy', '--src-tls-verify=false', `docker://${reg.host}/lib/app:v1`, `dir:${out}`);
    const config = readDirManifest(out).config as unknown as ImageConfig;
    assert.deepEqual(config.config?.Entrypoint, ['/usr/local/bin/app']);
    assert.deepEqual(config.config?.Env, ['MODE=prod']);
    assert.equal(config.created, '2023-11-14T22:13:20Z');

    const phases = events.filter((e) => e.type === 'phase').map((e) => e.phase);
    assert.deepEqual(phases, ['layers', 'push']);
    assert.equal(events.filter((e) => e.type === 'layer').length, 2);
    assert.ok(events.some((e) => e.type === 'read' && e.bytes > 0), 'bytes read are told');
    // Each layer's bytes are told under its SRC:DEST: all of its files read, of what was expected.
    const perLayer = (type: 'read' | 'expect' | 'uploaded') => {
      const by: Record<string, number> = {};
      for (const e of events) if (e.type === type && e.layer) by[e.layer.spec] = (by[e.layer.spec] ?? 0) + e.bytes;
      return by;
    };
    assert.deepEqual(Object.keys(perLayer('read')).sort(), ['app:/usr/local/bin/app', 'etc:/etc/app']);
    assert.deepEqual(perLayer('read'), perLayer('expect'));
    assert.deepEqual(Object.keys(perLayer('uploaded')).sort(), ['app:/usr/local/bin/app', 'etc:/etc/app'], 'a layer upload names its layer');
    const sent = events.reduce((n, e) => n + (e.type === 'uploaded' ? e.bytes : 0), 0);
    assert.ok(sent >= 256 << 10, `the layer uploads are counted (${sent} bytes)`);

    const again = await publish(options);
    assert.equal(again.digest, first.digest);
    assert.deepEqual(again.layers, { built: 0, cached: 2, reused: 0 });
    assert.equal(again.uploaded, 0);
  });

  test('an OCI layout with no registry at all, several platforms as an index', async () => {
    const r = await publish({
      cache, base: 'scratch', layers: ['app:/app'], cwd: join(work, 'src'),
      platforms: [parsePlatform('linux/amd64'), parsePlatform('linux/arm64')],
      output: { kind: 'oci', path: 'layout' },
    });
    assert.equal(r.output, `oci:${join(work, 'src', 'layout')}`, 'a relative path is taken from cwd');
    assert.deepEqual(r.platforms.map((p) => p.platform), ['linux/amd64', 'linux/arm64']);
    const raw = await skopeo('inspect', '--raw', `oci:${join(work, 'src', 'layout')}:latest`);
    assert.equal(sha256Digest(raw), r.digest);
  });

  test('layer settings apply to every layer: an excluded folder is not in the layer', async () => {
    const r = await publish({
      cache, base: 'scratch', layers: ['.:/srv'], cwd: join(work, 'src'), output: { kind: 'oci', path: join(work, 'excluded') },
      layerSettings: { exclude: excludeFilter(['etc', 'layout']), owner: { uid: 1000, gid: 1000 } },
    });
    const out = join(work, 'excluded-dir');
    await skopeo('copy', `oci:${join(work, 'excluded')}:latest`, `dir:${out}`);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as ImageManifest;
    assert.equal(sha256Digest(readFileSync(join(out, 'manifest.json'))), r.digest);
    const listing = execFileSync('tar', ['-tvzf', join(out, manifest.layers[0]!.digest.slice('sha256:'.length))], { encoding: 'utf8' });
    assert.match(listing, /srv\/app$/m);
    assert.doesNotMatch(listing, /srv\/etc/);
    assert.ok(listing.trim().split('\n').every((l) => l.includes(' 1000/1000 ')), listing);
  });

  test('bad options fail before any work, naming the option, not a CLI flag', async () => {
    const cases: [Parameters<typeof publish>[0], RegExp][] = [
      [{ cache, base: 'scratch', layers: ['app:/app'], cwd: join(work, 'src') }, /`repo`/],
      [{ cache, base: 'scratch', layers: [], output: { kind: 'oci', path: join(work, 'x') } }, /`layers`/],
      [{ cache, base: 'scratch', layers: ['app:/app'], cwd: join(work, 'src'), platforms: 'all', output: { kind: 'oci', path: join(work, 'x') } }, /platforms 'all'/],
      [{ cache, base: 'scratch', layers: ['app:/app'], cwd: join(work, 'src'), repo: parseReference(`${reg.host}/lib/x`), tags: ['-bad'] }, /invalid tag "-bad" in `tags`/],
      [{ cache, base: 'scratch', layers: ['app:/app'], cwd: join(work, 'src'), repo: parseReference(`${reg.host}/lib/x`), importPath: ' ' }, /empty import path/],
    ];
    for (const [options, message] of cases) {
      await assert.rejects(publish(options), (err: unknown) => {
        assert.ok(err instanceof KocacheError, String(err));
        assert.equal(err.code, 'input');
        assert.match(err.message, message);
        assert.doesNotMatch(err.message, /--/);
        return true;
      });
    }
    assert.equal(reg.uploadsStarted('lib/x'), 0, 'nothing was sent');
  });
});
