import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DEFAULT_GZIP, DEFAULT_TIMEOUTS, type GzipOptions, KocacheError, type OpenCache, buildImage, buildLayer, createdTime, loadArchive, openCache, parseLayerSource, parsePlatform,
  publish,
} from '../src/index.js';
import { tempDir } from './helpers/cli.js';
import { makeDockerArchive, standardLayers } from './helpers/archives.js';
import { appTree } from './helpers/image-fixtures.js';

// The library's callers pass numbers the command line would have checked (SOURCE_DATE_EPOCH,
// --level): one that cannot make a layer is an `input` KocacheError, before any work.
describe('library options the command line would refuse', () => {
  let work: string;
  let cache: OpenCache;
  before(() => {
    work = tempDir('kocache-lib-options-');
    mkdirSync(join(work, 'src'));
    appTree(join(work, 'src'));
    cache = openCache(join(work, 'cache'));
  });
  after(() => cache?.close());

  const input = (what: RegExp) => (err: unknown) => err instanceof KocacheError && err.code === 'input' && what.test(err.message);
  const epochs = [Number.NaN, -1, 1.5, 2 ** 40];
  const compressions: GzipOptions[] = [
    { level: 0, jobs: 1 }, { level: 10, jobs: 1 }, { level: 2.5, jobs: 1 },
    { algorithm: 'zstd', level: 20, jobs: 1 }, { algorithm: 'brotli' as 'gzip', level: 5, jobs: 1 },
  ];

  test('publish: sourceDateEpoch and compression, checked before any layer is built', async () => {
    const options = { cache, base: 'scratch', layers: ['app:/app'], cwd: join(work, 'src'), output: { kind: 'oci' as const, path: join(work, 'layout') } };
    for (const sourceDateEpoch of epochs) await assert.rejects(publish({ ...options, sourceDateEpoch }), input(/^sourceDateEpoch must be whole seconds/));
    for (const compression of compressions) await assert.rejects(publish({ ...options, compression }), input(/^compression/));
    assert.deepEqual(cache.contentFiles(), [], 'nothing was stored');
  });

  test('buildLayer: mtime and gzip; loadArchive: gzip', async () => {
    const o = { cache, importPath: 'example.com/app', platform: parsePlatform('linux/amd64') };
    const source = parseLayerSource(join(work, 'src', 'app'));
    for (const mtime of epochs) await assert.rejects(buildLayer(source, { ...o, mtime }), input(/^mtime must be whole seconds/));
    for (const gzip of compressions) await assert.rejects(buildLayer(source, { ...o, gzip }), input(/^compression/));
    const archive = makeDockerArchive(join(work, 'archive'), standardLayers()).path;
    for (const gzip of compressions.slice(0, 3)) await assert.rejects(loadArchive(archive, { cache, gzip, jobs: 1 }), input(/^compression level/));
  });

  test('buildImage: no platform plan at all', async () => {
    await assert.rejects(
      buildImage([], { cache, importPath: 'example.com/app', mtime: 0, created: createdTime(0), overrides: {} }),
      input(/^buildImage needs at least one platform plan/),
    );
  });

  test('the exported defaults cannot be changed by one caller for all others', () => {
    assert.throws(() => { (DEFAULT_GZIP as GzipOptions).level = 9; }, TypeError);
    assert.throws(() => { (DEFAULT_TIMEOUTS as { idleMs: number }).idleMs = 1; }, TypeError);
    assert.equal(DEFAULT_GZIP.level, 5);
    assert.equal(DEFAULT_TIMEOUTS.idleMs, 20_000);
  });
});
