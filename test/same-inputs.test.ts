import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ImageIndex, ImageManifest } from '../src/oci/manifest.js';
import { type PublishOut, runCli, tempDir, traceOf } from './helpers/cli.js';
import { readDirManifest, skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

// Issue 14: the same inputs give the same image and cost no work twice, whatever the checkout
// folder, the destination repository, or the number of platforms.

let reg: RunningRegistry;
before(async () => {
  reg = await startRegistry();
});
after(async () => {
  await reg?.stop();
});

type Published = PublishOut & { trace: Record<string, number> };

async function publish(args: string[], env: Record<string, string>, cwd: string): Promise<Published> {
  const r = await runCli(['publish', '--json', ...args], { ...env, KOCACHE_TRACE: '1' }, { cwd });
  assert.equal(r.code, 0, `publish ${args.join(' ')} failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Omit<Published, 'trace'>;
  return { ...out, trace: traceOf(r.stderr) };
}

/** The same bytes every call (so two calls make two copies of one tree): ~1.5 MB in 40 files. */
function appFiles(root: string): void {
  let seed = createHash('sha256').update('same inputs').digest();
  for (let i = 0; i < 40; i++) {
    const dir = join(root, `pkg${i % 5}`);
    mkdirSync(dir, { recursive: true });
    const parts: Buffer[] = [];
    for (let n = 0; n < 1200; n++) {
      seed = createHash('sha256').update(seed).digest();
      parts.push(seed);
    }
    writeFileSync(join(dir, `f${i}.js`), Buffer.concat(parts));
  }
  writeFileSync(join(root, 'run.sh'), '#!/bin/sh\nexec node pkg0/f0.js\n');
  chmodSync(join(root, 'run.sh'), 0o755);
}

function noWork(p: Published, what: string): void {
  assert.equal(p.trace['tar.out'] ?? 0, 0, `${what}: nothing tarred (${JSON.stringify(p.trace)})`);
  assert.equal(p.trace['gzip.in'] ?? 0, 0, `${what}: nothing gzipped`);
}

async function rawOf(ref: string, config = false): Promise<string> {
  return skopeo('inspect', '--raw', ...(config ? ['--config'] : []), '--tls-verify=false', `docker://${ref}`);
}

test('the same tree in two checkout folders, as an absolute path, a relative path and ".", is one image; no host path reaches it', async () => {
  const root = tempDir('kocache-same-');
  const a = join(root, 'checkout-one');
  const b = join(root, 'elsewhere', 'checkout-two');
  appFiles(join(a, 'dist'));
  mkdirSync(b, { recursive: true });
  cpSync(join(a, 'dist'), join(b, 'dist'), { recursive: true });
  const env = { KOCACHE: join(root, 'cache') };
  const common = ['--base', 'scratch', '--entrypoint', '/app/run.sh'];

  const first = await publish([`${join(a, 'dist')}:/app`, ...common, '--repo', `${reg.host}/paths:abs`], env, root);
  assert.ok((first.trace['gzip.in'] ?? 0) > 1 << 20, 'the first publish built the layer');
  const relative = await publish(['dist:/app', ...common, '--repo', `${reg.host}/paths:rel`], env, b);
  const dot = await publish(['.:/app', ...common, '--repo', `${reg.host}/paths:dot`], env, join(b, 'dist'));
  assert.equal(relative.digest, first.digest, 'a relative path in another checkout');
  assert.equal(dot.digest, first.digest, '"." in another checkout');
  noWork(relative, 'another checkout');
  noWork(dot, '"."');

  // And a cache of its own (CI runners with other workspace paths): built again, same bytes.
  const fresh = await publish(['dist:/app', ...common, '--output', `oci:${join(root, 'layout')}`], { KOCACHE: join(root, 'cache-2') }, b);
  assert.equal(fresh.digest.replace(/^.*@/, ''), first.digest);

  const manifest = await rawOf(`${reg.host}/paths:abs`);
  const config = await rawOf(`${reg.host}/paths:abs`, true);
  for (const text of [manifest, config]) {
    for (const hostPath of [root, 'checkout-one', 'checkout-two', 'elsewhere', 'dist']) {
      assert.ok(!text.includes(hostPath), `${hostPath} appears in ${text}`);
    }
  }
  const history = (JSON.parse(config) as { history: { created_by: string }[]; rootfs: { diff_ids: string[] } });
  assert.deepEqual(history.history.map((h) => h.created_by), [`kocache layer /app ${history.rootfs.diff_ids[0]}`]);
});

test('publishing the same inputs to a second repository: no tar, no gzip, no layer upload', async () => {
  const root = tempDir('kocache-repo-');
  appFiles(join(root, 'dist'));
  writeFileSync(join(root, 'app.conf'), 'listen = 8080\n');
  const env = { KOCACHE: join(root, 'cache') };
  const layers = ['dist:/app', 'app.conf:/etc/app.conf', '--base', 'scratch', '--entrypoint', '/app/run.sh'];

  const first = await publish([...layers, '--repo', `${reg.host}/web:v1`], env, root);
  assert.equal(first.uploaded, 3, 'two layers and the config');
  const second = await publish([...layers, '--repo', `${reg.host}/web-staging:v1`], env, root);
  noWork(second, 'the second repository');
  assert.equal(second.digest, first.digest);
  assert.equal(second.uploaded, 0, JSON.stringify(second));
  assert.equal(second.mounted + second.present, 3);
  const uploads = reg.requests('POST', /^\/v2\/web-staging\/blobs\/uploads\//) - reg.requests('POST', /^\/v2\/web-staging\/blobs\/uploads\/\?.*mount=/);
  assert.equal(uploads, 0, 'no upload session other than mounts');
  assert.equal(reg.requests('PATCH', /^\/v2\/web-staging\//), 0, 'no layer bytes sent');

  // An explicit --import-path is a name, not part of what the layer is: still no work.
  const named = await publish([...layers, '--repo', `${reg.host}/web-named:v1`, '--import-path', 'example.com/web'], env, root);
  noWork(named, 'another --import-path');
  assert.equal(named.digest, first.digest);
});

test('kocache build SRC:DEST warms the publish of the same SRC:DEST; the same SRC at two DESTs is two layers (ko#1704)', async () => {
  const root = tempDir('kocache-warmed-');
  appFiles(join(root, 'dist'));
  const env = { KOCACHE: join(root, 'cache') };
  for (const dest of ['/app', '/srv/app']) {
    const b = await runCli(['build', `dist:${dest}`, '--import-path', 'example.com/anything', '--platform', 'linux/arm64'], env, { cwd: root });
    assert.equal(b.code, 0, b.stderr);
  }
  const p = await publish(['dist:/app', 'dist:/srv/app', '--base', 'scratch', '--repo', `${reg.host}/warmed:v1`], env, root);
  noWork(p, 'a publish after build');
  const m = JSON.parse(await rawOf(`${reg.host}/warmed:v1`)) as ImageManifest;
  assert.equal(m.layers.length, 2);
  assert.notEqual(m.layers[0]!.digest, m.layers[1]!.digest, 'the destination is part of every key');

  // warm SRC does the same.
  const env2 = { KOCACHE: join(root, 'cache-2') };
  const w = await runCli(['warm', 'dist:/app', '--import-path', 'x'], env2, { cwd: root });
  assert.equal(w.code, 0, w.stderr);
  noWork(await publish(['dist:/app', '--base', 'scratch', '--repo', `${reg.host}/warmed:v2`], env2, root), 'a publish after warm');
});

test('two platforms: a layer that is the same for both is built once; one whose SRC names {arch} is built per platform', async () => {
  const root = tempDir('kocache-platforms-');
  appFiles(join(root, 'node_modules'));
  for (const arch of ['amd64', 'arm64']) {
    mkdirSync(join(root, 'out', arch), { recursive: true });
    writeFileSync(join(root, 'out', arch, 'app'), createHash('sha256').update(arch).digest('hex').repeat(4000));
  }
  const shared = ['node_modules:/app/node_modules', '--base', 'scratch'];
  const one = await publish([...shared, '--platform', 'linux/amd64', '--output', `oci:${join(root, 'one')}`], { KOCACHE: join(root, 'cache-1') }, root);
  const two = await publish([...shared, '--platform', 'linux/amd64', '--platform', 'linux/arm64', '--output', `oci:${join(root, 'two')}`], { KOCACHE: join(root, 'cache-2') }, root);
  assert.ok((one.trace['gzip.in'] ?? 0) > 1 << 20);
  assert.equal(two.trace['gzip.in'], one.trace['gzip.in'], 'gzip ran over the shared layer once');
  assert.equal(two.trace['tar.out'], one.trace['tar.out'], 'and the tree was tarred once');

  const env = { KOCACHE: join(root, 'cache-3') };
  const both = await publish(
    ['node_modules:/app/node_modules', 'out/{arch}/app:/app/bin', '--base', 'scratch', '--repo', `${reg.host}/multi-shared:v1`, '--platform', 'linux/amd64', '--platform', 'linux/arm64'],
    env, root,
  );
  const index = JSON.parse(await rawOf(`${reg.host}/multi-shared:v1`)) as ImageIndex;
  assert.deepEqual(index.manifests.map((d) => `${d.platform?.os}/${d.platform?.architecture}`), ['linux/amd64', 'linux/arm64']);
  const children: ImageManifest[] = [];
  for (const d of index.manifests) {
    children.push(JSON.parse(await rawOf(`${reg.host}/multi-shared@${d.digest}`)) as ImageManifest);
    const out = join(root, `copy-${d.platform!.architecture}`);
    await skopeo('copy', '--src-tls-verify=false', `docker://${reg.host}/multi-shared@${d.digest}`, `dir:${out}`);
    assert.equal((readDirManifest(out).config as { architecture: string }).architecture, d.platform!.architecture);
  }
  assert.equal(children[0]!.layers[0]!.digest, children[1]!.layers[0]!.digest, 'one shared layer');
  assert.notEqual(children[0]!.layers[1]!.digest, children[1]!.layers[1]!.digest, 'a layer per platform for {arch}');
  // Beyond the one-platform publish: the two per-platform files (256,000 bytes each, plus tar
  // headers), not the ~1.5 MB shared tree a second time.
  const extra = both.trace['gzip.in']! - one.trace['gzip.in']!;
  assert.ok(extra > 2 * 256_000 && extra < 2 * 256_000 + 64 * 1024, `gzip.in beyond one platform: ${extra}`);
});
