import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { configFor, makeDockerArchive, makeLayerTar, makeOciLayout, standardLayers, writeRawTar } from './helpers/archives.js';
import { isOneLineError, runCli, tempDir } from './helpers/cli.js';
import { runWatched } from './helpers/watch.js';

const dirs: string[] = [];
function scratch(): string {
  const d = tempDir('kocache-bounds-');
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Bytes the files under a folder occupy on disk (sparse files count what they really use). */
export function diskUsage(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(p);
      else total += st.blocks * 512;
    }
  };
  walk(dir);
  return total;
}

/** Far above what importing a few-MB layout takes, far below what reading /dev/zero grows to. */
const MAX_RSS_KB = 400 * 1024;

function layoutOf(dir: string): { layout: string; layerBlob: string; manifestBlob: string } {
  const a = makeDockerArchive(dir, standardLayers().slice(0, 1));
  const layout = makeOciLayout(a.tarPath, dir);
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const manifestBlob = join(layout, 'blobs/sha256', index.manifests[0]!.digest.slice(7));
  const manifest = JSON.parse(readFileSync(manifestBlob, 'utf8')) as { layers: { digest: string }[] };
  return { layout, manifestBlob, layerBlob: join(layout, 'blobs/sha256', manifest.layers[0]!.digest.slice(7)) };
}

async function warmBounded(dir: string, layout: string) {
  const cache = join(dir, 'cache');
  const r = await runWatched(['warm', '--tarball', layout], { KOCACHE: cache }, { maxRssKb: MAX_RSS_KB, timeoutMs: 60_000 });
  assert.equal(r.killed, undefined, `killed (${r.killed}) at a peak RSS of ${r.peakRssKb} KiB:\n${r.stderr}`);
  assert.ok(r.peakRssKb < MAX_RSS_KB, `peak RSS ${r.peakRssKb} KiB`);
  return { ...r, cache };
}

describe('a layout folder: only regular files, read no further than the format or descriptor allows', () => {
  for (const which of ['index.json', 'oci-layout', 'layer blob', 'manifest blob'] as const) {
    test(`${which} as a link to /dev/zero is refused in one line, memory stays flat`, async () => {
      const dir = scratch();
      const l = layoutOf(dir);
      const path = which === 'index.json' ? join(l.layout, 'index.json') : which === 'oci-layout' ? join(l.layout, 'oci-layout') : which === 'layer blob' ? l.layerBlob : l.manifestBlob;
      unlinkSync(path);
      symlinkSync('/dev/zero', path);
      const r = await warmBounded(dir, l.layout);
      assert.ok(isOneLineError(r), `one-line error, got ${r.code}:\n${r.stderr}`);
      assert.match(r.stderr, /link leading out of the folder/);
    });

    test(`${which} as a FIFO is refused in one line, without hanging`, async () => {
      const dir = scratch();
      const l = layoutOf(dir);
      const path = which === 'index.json' ? join(l.layout, 'index.json') : which === 'oci-layout' ? join(l.layout, 'oci-layout') : which === 'layer blob' ? l.layerBlob : l.manifestBlob;
      unlinkSync(path);
      execFileSync('mkfifo', [path]);
      const r = await warmBounded(dir, l.layout);
      assert.ok(isOneLineError(r), `one-line error, got ${r.code}:\n${r.stderr}`);
      assert.match(r.stderr, /is not a regular file/);
    });
  }

  test('a huge file in place of a small blob is refused by its size, without being read or stored', async () => {
    const dir = scratch();
    const l = layoutOf(dir);
    // Sparse: 300 MB long, a few KB on disk; the descriptor says ~2.5 MB.
    truncateSync(l.layerBlob, 300 << 20);
    const r = await warmBounded(dir, l.layout);
    assert.ok(isOneLineError(r), `one-line error, got ${r.code}:\n${r.stderr}`);
    assert.match(r.stderr, /blob sha256:[0-9a-f]{64} is corrupt \(the file is 314572800 bytes, its descriptor says \d+\)/);
    assert.ok(diskUsage(r.cache) < 10 << 20, `cache holds ${diskUsage(r.cache)} bytes`);
  });

  test('links that stay inside the folder are followed', async () => {
    const dir = scratch();
    const l = layoutOf(dir);
    renameSync(join(l.layout, 'index.json'), join(l.layout, 'index.real.json'));
    symlinkSync('index.real.json', join(l.layout, 'index.json'));
    renameSync(l.layerBlob, join(l.layout, 'layer.bin'));
    symlinkSync('../../layer.bin', l.layerBlob);
    const r = await runCli(['warm', '--json', '--tarball', l.layout], { KOCACHE: join(dir, 'cache') });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout).warmed[0] as { layers: number }).layers, 1);
  });
});

const MB = 1 << 20;

function sh(script: string): void {
  execFileSync('sh', ['-c', script], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A file of `size` zero bytes taking no disk (tar without --sparse still writes every zero). */
function zeros(path: string, size: number): void {
  writeFileSync(path, '');
  truncateSync(path, size);
}

describe('disk stays bounded by what the image needs', () => {
  test('entries no manifest names are not kept: a 300 MB run of zeros (plain and gzipped) in a 1 MB archive', async () => {
    const dir = scratch();
    const root = join(dir, 'root');
    mkdirSync(join(root, 'l'), { recursive: true });
    const layer = makeLayerTar(dir, 'l', { 'a.txt': 'a\n' });
    writeFileSync(join(root, 'l/layer.tar'), layer.bytes);
    writeFileSync(join(root, 'config.json'), configFor([layer.diffid]));
    zeros(join(dir, 'z'), 300 * MB);
    sh(`gzip -1 -c ${dir}/z > ${root}/junk.gz`);
    zeros(join(root, 'junk.bin'), 300 * MB);
    writeFileSync(join(root, 'manifest.json'), JSON.stringify([{ Config: 'config.json', Layers: ['l/layer.tar'] }]));
    // The junk first, the manifest last, as docker save and skopeo order their archives.
    const archive = join(dir, 'a.tar.gz');
    sh(`tar --owner=0 --group=0 -C ${root} -cf - junk.bin junk.gz l config.json manifest.json | gzip -1 > ${archive}`);
    assert.ok(statSync(archive).size < 4 * MB);

    const r = await runWatched(['warm', '--json', '--tarball', archive], { KOCACHE: join(dir, 'cache') }, { maxRssKb: MAX_RSS_KB, timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout).warmed[0] as { layers: number }).layers, 1);
    const used = diskUsage(join(dir, 'cache'));
    assert.ok(used < 10 * MB, `the cache holds ${used} bytes`);
    // And the image is whole: a second warm finds it all.
    const again = await runCli(['warm', '--json', '--tarball', archive], { KOCACHE: join(dir, 'cache') });
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout).warmed[0] as { cached: boolean }).cached, true);
  });

  test('a gzipped layer inflating to 200 MB with the wrong diff_id is refused and its tar removed', async () => {
    const dir = scratch();
    const root = join(dir, 'root');
    mkdirSync(join(root, 'l'), { recursive: true });
    mkdirSync(join(dir, 'src'));
    zeros(join(dir, 'src/zeros.bin'), 200 * MB);
    sh(`tar --owner=0 --group=0 -C ${dir}/src -cf - zeros.bin | gzip -1 > ${root}/l/layer.tar`);
    writeFileSync(join(root, 'config.json'), configFor([`sha256:${'0'.repeat(64)}`]));
    writeFileSync(join(root, 'manifest.json'), JSON.stringify([{ Config: 'config.json', Layers: ['l/layer.tar'] }]));
    const archive = join(dir, 'a.tar');
    sh(`tar -C ${root} -cf ${archive} l config.json manifest.json`);

    const cache = join(dir, 'cache');
    const r = await runCli(['warm', '--tarball', archive], { KOCACHE: cache });
    assert.ok(isOneLineError(r), `one-line error, got ${r.code}:\n${r.stderr}`);
    assert.match(r.stderr, /has diffid sha256:[0-9a-f]{64} but the config's diff_ids\[0\]/);
    const used = diskUsage(cache);
    assert.ok(used < 5 * MB, `the cache holds ${used} bytes`);
  });

  test('a refused 50 MB manifest leaves no blob', async () => {
    const dir = scratch();
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [], pad: 'x'.repeat(50 * MB) }));
    const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
    const index = { schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: manifest.length }] };
    const archive = join(dir, 'oci.tar');
    await writeRawTar(archive, [
      { name: 'oci-layout', body: '{"imageLayoutVersion":"1.0.0"}' },
      { name: `blobs/sha256/${digest.slice(7)}`, body: manifest },
      { name: 'index.json', body: JSON.stringify(index) },
    ]);
    const cache = join(dir, 'cache');
    const r = await runCli(['warm', '--tarball', archive], { KOCACHE: cache });
    assert.ok(isOneLineError(r), `one-line error, got ${r.code}:\n${r.stderr}`);
    assert.match(r.stderr, /too big to be a manifest/);
    const used = diskUsage(cache);
    assert.ok(used < 5 * MB, `the cache holds ${used} bytes`);
  });
});
