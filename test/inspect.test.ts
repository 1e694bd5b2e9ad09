import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isOneLineError, runCli, tempDir } from './helpers/cli.js';
import { someBytes } from './helpers/archives.js';
import { helloOut, skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

let work: string;
let env: Record<string, string>;
let reg: RunningRegistry;

before(async () => {
  work = tempDir('kocache-inspect-');
  env = { KOCACHE: join(work, 'cache') };
  helloOut(work);
  writeFileSync(join(work, 'out', 'data'), someBytes(100 << 10, 'inspect'));
  reg = await startRegistry();
});
after(async () => {
  await reg?.stop();
});

async function cli(args: string[]): Promise<string> {
  const r = await runCli(args, env, { cwd: work });
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The documented shape of `kocache inspect --json` (docs/cli-json.md). */
function checkShape(v: Record<string, unknown>): void {
  assert.deepEqual(Object.keys(v), ['source', 'mediaType', 'digest', 'annotations', 'images']);
  for (const img of v.images as Record<string, unknown>[]) {
    assert.deepEqual(Object.keys(img), ['platform', 'mediaType', 'digest', 'size', 'annotations', 'tags', 'manifest', 'config', 'layers', 'layersSize']);
    assert.deepEqual(Object.keys(img.config as object), ['mediaType', 'digest', 'size', 'content']);
    for (const l of img.layers as object[]) assert.deepEqual(Object.keys(l), ['mediaType', 'digest', 'size', 'diffid']);
  }
}

const common = ['--base', 'scratch', '--entrypoint', '/app/hello', '--env', 'A=1'];

describe('inspect', () => {
  test('a registry image, an OCI layout by tag, and the same image as an OCI archive agree', async () => {
    const ref = `${reg.host}/insp/hello:v1`;
    const pushed = JSON.parse(await cli(['publish', '--json', './out:/app', ...common, '--repo', ref]));
    const remote = JSON.parse(await cli(['inspect', '--json', ref]));
    checkShape(remote);
    assert.equal(remote.digest, pushed.digest);
    assert.equal(remote.images.length, 1);
    const img = remote.images[0];
    assert.equal(img.platform, 'linux/amd64');
    assert.deepEqual(img.config.content.config.Entrypoint, ['/app/hello']);
    assert.equal(img.layers.length, 1);
    assert.ok(img.layers[0].size > 1000, 'layer size as pushed');
    assert.equal(img.layersSize, img.layers[0].size);
    assert.match(img.layers[0].diffid, /^sha256:/);
    // skopeo agrees on what the registry holds.
    const sk = JSON.parse(await skopeo('inspect', '--tls-verify=false', `docker://${ref}`));
    assert.equal(sk.Digest, remote.digest);
    const raw = JSON.parse(await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${ref}`));
    assert.deepEqual(raw, img.manifest);
    assert.deepEqual(raw.layers.map((l: { digest: string; size: number }) => [l.digest, l.size]), img.layers.map((l: { digest: string; size: number }) => [l.digest, l.size]));

    await skopeo('copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${join(work, 'lay')}:v1`);
    const local = JSON.parse(await cli(['inspect', '--json', `oci:${join(work, 'lay')}:v1`]));
    checkShape(local);
    assert.equal(local.digest, remote.digest);
    assert.deepEqual(local.images[0].tags, ['v1']);
    assert.deepEqual(local.images[0].layers, img.layers);

    await skopeo('copy', '--src-tls-verify=false', `docker://${ref}`, `oci-archive:${join(work, 'img.tar')}:v1`);
    const archived = JSON.parse(await cli(['inspect', '--json', join(work, 'img.tar')]));
    checkShape(archived);
    assert.deepEqual(archived.images[0].layers, img.layers);
    assert.deepEqual(JSON.parse(await cli(['inspect', '--json', `docker-archive:${join(work, 'img.tar')}`])).images[0].layers, img.layers);

    const text = await cli(['inspect', ref]);
    assert.match(text, /linux\/amd64 {2}sha256:/);
    assert.match(text, /entrypoint \["\/app\/hello"\]/);
    assert.match(text.trimEnd().split('\n').at(-1)!, /^1 image, 1 layer, [\d.]+ KiB of layers$/);
  });

  test('a multi-platform index lists each platform', async () => {
    const ref = `${reg.host}/insp/multi:v1`;
    const pushed = JSON.parse(await cli(['publish', '--json', './out:/app', ...common, '--repo', ref, '--platform', 'linux/amd64', '--platform', 'linux/arm64']));
    const r = JSON.parse(await cli(['inspect', '--json', ref]));
    checkShape(r);
    assert.equal(r.digest, pushed.digest);
    assert.equal(r.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(r.images.map((i: { platform: string }) => i.platform), ['linux/amd64', 'linux/arm64']);
  });

  test('a docker-archive: RepoTags, config, layer sizes', async () => {
    const file = join(work, 'da.tar');
    await cli(['publish', './out:/app', ...common, '--repo', 'example.com/da:v2', '--output', `docker-archive:${file}`]);
    const r = JSON.parse(await cli(['inspect', '--json', `docker-archive:${file}`]));
    checkShape(r);
    assert.equal(r.mediaType, 'docker-archive');
    assert.deepEqual(r.images[0].tags, ['example.com/da:v2']);
    assert.deepEqual(r.images[0].config.content.config.Env.at(-1), 'A=1');
    assert.equal(r.images[0].layers.length, 1);
    assert.ok(r.images[0].layers[0].size > 1000);
    // A prefix naming the other kind of archive: the bytes decide, as for push.
    assert.deepEqual(JSON.parse(await cli(['inspect', '--json', `oci-archive:${file}`])), { ...r, source: `oci-archive:${file}` });
    // A file is read as it is: a cache folder that is not there is not made for it.
    const none = join(work, 'no-cache-here');
    const noCache = await runCli(['inspect', '--json', `docker-archive:${file}`], { KOCACHE: none });
    assert.equal(noCache.code, 0, noCache.stderr);
    assert.deepEqual(JSON.parse(noCache.stdout), r);
    assert.equal(existsSync(none), false, 'no cache folder made');
  });

  test('a layout with several images: all listed; an unknown tag is an error that lists the tags', async () => {
    const dir = join(work, 'two');
    await cli(['publish', './out:/app', ...common, '--output', `oci:${dir}`, '--repo', 'example.com/two:a']);
    await cli(['publish', './out:/app', '--base', 'scratch', '--output', `oci:${dir}`, '--repo', 'example.com/two:b']);
    const r = JSON.parse(await cli(['inspect', '--json', `oci:${dir}`]));
    checkShape(r);
    assert.deepEqual(r.images.map((i: { tags: string[] }) => i.tags), [['a'], ['b']]);
    const bad = await runCli(['inspect', `oci:${dir}:c`], env);
    assert.equal(bad.code, 1);
    assert.ok(isOneLineError(bad), bad.stderr);
    assert.match(bad.stderr, /has no image tagged "c" \(tags: a, b\)/);
  });

  test('what is not an image fails with one line', async () => {
    writeFileSync(join(work, 'junk'), 'not an archive at all');
    const r = await runCli(['inspect', join(work, 'junk')], env);
    assert.ok(isOneLineError(r), r.stderr);
    const missing = await runCli(['inspect', `${reg.host}/insp/none:v1`], env);
    assert.ok(isOneLineError(missing), missing.stderr);
    // An archive's file name that is not there is a missing file, not an image on Docker Hub;
    // push says the same, with the same exit code as any missing input.
    for (const args of [['inspect', 'gone.tar'], ['push', 'gone.tar.gz', `${reg.host}/insp/gone:v1`], ['push', 'gone', `${reg.host}/insp/gone:v1`]]) {
      const r = await runCli(args, env, { cwd: work });
      assert.ok(isOneLineError(r), r.stderr);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /no such file/);
      assert.doesNotMatch(r.stderr, /docker\.io/);
    }
  });
});
