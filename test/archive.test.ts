import assert from 'node:assert/strict';
import { readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { configFor, makeDockerArchive, makeLayerTar, makeOciLayout, standardLayers, tarLayout, writeRawTar } from './helpers/archives.js';
import { isOneLineError, runCli, tempDir, traceOf } from './helpers/cli.js';

const dirs: string[] = [];
function scratch(): string {
  const d = tempDir('kocache-archive-');
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Row { key: string }

async function records(cache: string): Promise<string[]> {
  const r = await runCli(['ls', '--json'], { KOCACHE: cache });
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Row[]).map((x) => x.key);
}

async function warm(cache: string, ...archives: string[]) {
  const r = await runCli(['warm', '--json', '--tarball', ...archives], { KOCACHE: cache, KOCACHE_TRACE: '1' });
  return { ...r, trace: r.code === 0 ? traceOf(r.stderr) : {} };
}

describe('warm --tarball: one pass over the archive', () => {
  test('a gzipped (multi-member) docker-archive is inflated once, each gzipped layer once, each plain layer compressed once; a second import does none of it', async () => {
    const dir = scratch();
    const cache = join(dir, 'cache');
    const a = makeDockerArchive(dir, standardLayers(), { gzip: 'multi-member' });

    const first = await warm(cache, a.path);
    assert.equal(first.code, 0, first.stderr);
    // Exactly the archive's uncompressed size, not once per layer (5 layers here): the bug this guards.
    assert.equal(first.trace['inflate.archive'], a.tarSize);
    assert.equal(first.trace['inflate.layer'], a.gzippedLayerTarBytes);
    // The repeated layer (a symlink to layer 0) is compressed once, not twice.
    assert.equal(first.trace['gzip.in'], a.plainLayerTarBytes);
    const out = JSON.parse(first.stdout).warmed[0] as { cached: boolean; layers: number; format: string };
    assert.equal(out.cached, false);
    assert.equal(out.layers, 5);
    assert.equal(out.format, 'gzip');

    const keys = await records(cache);
    for (const d of new Set(a.diffIds)) {
      assert.ok(keys.includes(`tar/${d}`), `tar/${d} recorded`);
      assert.ok(keys.some((k) => k.startsWith(`layer/diffid/${d}/`)), `layer/diffid/${d} recorded`);
    }
    assert.equal(keys.filter((k) => k.startsWith('archive/')).length, 1);

    const second = await warm(cache, a.path);
    assert.equal(second.code, 0, second.stderr);
    assert.equal((JSON.parse(second.stdout).warmed[0] as { cached: boolean }).cached, true);
    assert.equal(second.trace['inflate.archive'] ?? 0, 0);
    assert.equal(second.trace['inflate.layer'] ?? 0, 0);
    assert.equal(second.trace['gzip.in'] ?? 0, 0);
  });

  test('an unchanged archive file is recognised by its stat, not read again; a touched one is hashed again', async () => {
    const dir = scratch();
    const cache = join(dir, 'cache');
    const a = makeDockerArchive(dir, standardLayers(), { gzip: 'multi-member' });
    const size = statSync(a.path).size;
    // A file written within the last 2 s may change again without its timestamps moving (the
    // stat cache's racy-timestamp rule), so its stat is not trusted until that window has passed.
    await new Promise((r) => setTimeout(r, 2_100));
    const first = await warm(cache, a.path);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.trace['file.hash'], size, 'the first import hashes the archive');
    const second = await warm(cache, a.path);
    assert.equal((JSON.parse(second.stdout).warmed[0] as { cached: boolean }).cached, true);
    assert.equal(second.trace['file.hash'] ?? 0, 0, 'recognised by its stat');
    utimesSync(a.path, new Date(), new Date());
    const touched = await warm(cache, a.path);
    assert.equal((JSON.parse(touched.stdout).warmed[0] as { cached: boolean }).cached, true, 'same bytes, same archive');
    assert.equal(touched.trace['file.hash'], size, 'a touched archive is hashed again');
  });

  test('a plain archive inflates nothing; another archive holding the same plain layers compresses nothing', async () => {
    const dir = scratch();
    const cache = join(dir, 'cache');
    const a = makeDockerArchive(join(dir), standardLayers());
    const r = await warm(cache, a.tarPath);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.trace['inflate.archive'] ?? 0, 0);
    assert.equal(r.trace['gzip.in'], a.plainLayerTarBytes);

    // The same image gzipped is another file (another archive key), but every layer is known by diffid.
    const gz = join(dir, 'again.bin');
    writeFileSync(gz, gzipSync(readFileSync(a.tarPath)));
    const again = await warm(cache, gz);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.trace['inflate.archive'], a.tarSize);
    assert.equal(again.trace['gzip.in'] ?? 0, 0);
  });

  test('an OCI layout directory and the same layout tarred and gzipped import the image with the archive config', async () => {
    const dir = scratch();
    const cache = join(dir, 'cache');
    const a = makeDockerArchive(dir, standardLayers().slice(0, 4));
    const layout = makeOciLayout(a.tarPath, dir);
    const ociTar = tarLayout(layout, join(dir, 'oci.tar'), true);

    const fromDir = await warm(cache, layout);
    assert.equal(fromDir.code, 0, fromDir.stderr);
    const d1 = JSON.parse(fromDir.stdout).warmed[0] as { digest: string; format: string; layers: number };
    assert.equal(d1.format, 'layout');
    assert.equal(d1.layers, 4);

    const fromTar = await warm(cache, ociTar);
    assert.equal(fromTar.code, 0, fromTar.stderr);
    const d2 = JSON.parse(fromTar.stdout).warmed[0] as { digest: string; format: string };
    assert.equal(d2.format, 'gzip');
    assert.equal(d2.digest, d1.digest, 'same image from the directory and from the archive');
    // Everything was compressed (or kept) by the directory import already.
    assert.equal(fromTar.trace['gzip.in'] ?? 0, 0);
    const again = await warm(cache, layout);
    assert.equal((JSON.parse(again.stdout).warmed[0] as { cached: boolean }).cached, true);
  });

  test('several archives in one warm', async () => {
    const dir = scratch();
    const cache = join(dir, 'cache');
    const a = makeDockerArchive(join(dir), standardLayers().slice(0, 2), { gzip: true });
    const r = await warm(cache, a.path, a.tarPath);
    assert.equal(r.code, 0, r.stderr);
    const rows = JSON.parse(r.stdout).warmed as { digest: string }[];
    assert.equal(rows.length, 2);
    assert.equal(rows[0]!.digest, rows[1]!.digest);
  });
});

describe('warm --tarball: bad input is one line, non-zero, and leaves no records', () => {
  async function expectFailure(make: (dir: string) => Promise<string> | string, pattern: RegExp) {
    const dir = scratch();
    const cache = join(dir, 'cache');
    const path = await make(dir);
    const r = await runCli(['warm', '--tarball', path], { KOCACHE: cache });
    assert.ok(isOneLineError(r), `one-line error, got code ${r.code}:\n${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.deepEqual(await records(cache), [], 'no records after a failed import');
  }

  const layer = (dir: string) => makeLayerTar(dir, 'l', { 'a.txt': 'a\n' });
  const dockerEntries = (dir: string) => {
    const l = layer(dir);
    return [
      { name: 'l/layer.tar', body: l.bytes },
      { name: 'config.json', body: configFor([l.diffid]) },
      { name: 'manifest.json', body: JSON.stringify([{ Config: 'config.json', Layers: ['l/layer.tar'] }]) },
    ];
  };

  test('an entry climbing out with ..', () =>
    expectFailure(async (dir) => {
      const p = join(dir, 'a.tar');
      await writeRawTar(p, [{ name: '../evil', body: 'x' }, ...dockerEntries(dir)]);
      return p;
    }, /climbs out of the archive/));

  test('an entry with an absolute path', () =>
    expectFailure(async (dir) => {
      const p = join(dir, 'a.tar');
      await writeRawTar(p, [{ name: '/etc/evil', body: 'x' }, ...dockerEntries(dir)]);
      return p;
    }, /absolute path/));

  test('a symlink leaving the archive', () =>
    expectFailure(async (dir) => {
      const p = join(dir, 'a.tar');
      const [, c, m] = dockerEntries(dir);
      await writeRawTar(p, [c!, m!, { name: 'l/layer.tar', type: 'symlink', linkname: '../../etc/passwd' }]);
      return p;
    }, /leaves the archive/));

  test('a link to an absolute path', () =>
    expectFailure(async (dir) => {
      const p = join(dir, 'a.tar');
      const [, c, m] = dockerEntries(dir);
      await writeRawTar(p, [c!, m!, { name: 'l/layer.tar', type: 'symlink', linkname: '/etc/passwd' }]);
      return p;
    }, /absolute path outside the archive/));

  test('manifest.json naming a file that is not there', () =>
    expectFailure(async (dir) => {
      const p = join(dir, 'a.tar');
      const [l, c] = dockerEntries(dir);
      await writeRawTar(p, [l!, c!, { name: 'manifest.json', body: JSON.stringify([{ Config: 'config.json', Layers: ['l/layer.tar', 'missing/layer.tar'] }]) }]);
      return p;
    }, /names "missing\/layer\.tar", which is not in the archive/));

  test('a config whose diff_ids do not match the layers', () =>
    expectFailure(async (dir) => {
      const p = join(dir, 'a.tar');
      const [l, , m] = dockerEntries(dir);
      await writeRawTar(p, [l!, { name: 'config.json', body: configFor([`sha256:${'0'.repeat(64)}`]) }, m!]);
      return p;
    }, /has diffid sha256:[0-9a-f]{64} but the config's diff_ids\[0\] is sha256:0{64}/));

  test('a config listing fewer diff_ids than layers', () =>
    expectFailure(async (dir) => {
      const p = join(dir, 'a.tar');
      const [l, , m] = dockerEntries(dir);
      await writeRawTar(p, [l!, { name: 'config.json', body: configFor([]) }, m!]);
      return p;
    }, /lists 0 diff_ids but the image has 1 layers/));

  test('a truncated gzipped archive', () =>
    expectFailure((dir) => {
      const a = makeDockerArchive(dir, standardLayers().slice(0, 3), { gzip: true });
      const bytes = readFileSync(a.path);
      const p = join(dir, 'cut.tgz');
      writeFileSync(p, bytes.subarray(0, Math.floor(bytes.length * 0.8)));
      return p;
    }, /truncated gzip stream/));

  test('a corrupt gzipped archive', () =>
    expectFailure((dir) => {
      const a = makeDockerArchive(dir, standardLayers().slice(0, 3), { gzip: true });
      const bytes = Buffer.from(readFileSync(a.path));
      for (let i = 0; i < 64; i++) bytes[2000 + i * 97] = bytes[2000 + i * 97]! ^ 0x5a;
      const p = join(dir, 'bad.tgz');
      writeFileSync(p, bytes);
      return p;
    }, /corrupt gzip stream|not a valid tar/));

  test('a truncated gzipped layer inside a plain archive', () =>
    expectFailure((dir) => {
      const a = makeDockerArchive(dir, [{ files: { 'big.bin': Buffer.alloc(3_000_000, 7) }, gzip: true }]);
      // Rebuild the archive with the layer cut short (but the tar itself well formed).
      const manifest = JSON.parse(readFileSync(join(a.root, 'manifest.json'), 'utf8')) as { Config: string; Layers: string[] }[];
      const layerBytes = readFileSync(join(a.root, manifest[0]!.Layers[0]!));
      const p = join(dir, 'cut-layer.tar');
      return writeRawTar(p, [
        { name: manifest[0]!.Layers[0]!, body: layerBytes.subarray(0, layerBytes.length - 20) },
        { name: manifest[0]!.Config, body: a.config },
        { name: 'manifest.json', body: readFileSync(join(a.root, 'manifest.json')) },
      ]).then(() => p);
    }, /layer0\/layer\.tar: truncated gzip stream/));

  test('a truncated tar', () =>
    expectFailure((dir) => {
      const a = makeDockerArchive(dir, standardLayers().slice(0, 1));
      const p = join(dir, 'cut.tar');
      writeFileSync(p, readFileSync(a.tarPath).subarray(0, 700_000));
      return p;
    }, /truncated tar archive/));

  test('an unknown format', () =>
    expectFailure((dir) => {
      const p = join(dir, 'image.tar');
      writeFileSync(p, 'this is not an archive at all\n'.repeat(100));
      return p;
    }, /is not a tar archive, a gzipped tar archive or an OCI layout directory/));

  test('a tar that is not an image archive', () =>
    expectFailure(async (dir) => {
      const p = join(dir, 'files.tar');
      await writeRawTar(p, [{ name: 'README', body: 'hello' }]);
      return p;
    }, /not an image archive/));

  test('a zstd archive', () =>
    expectFailure((dir) => {
      const p = join(dir, 'image.tar.zst');
      writeFileSync(p, Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]));
      return p;
    }, /zstd-compressed/));

  test('a missing file', () => expectFailure((dir) => join(dir, 'nope.tar'), /cannot read archive .*nope\.tar: no such file or directory/));

  test('a directory that is not an OCI layout', () => expectFailure((dir) => dir, /not an OCI image layout/));

  test('an OCI layout with a corrupt blob', () =>
    expectFailure((dir) => {
      const a = makeDockerArchive(dir, standardLayers().slice(0, 1));
      const layout = makeOciLayout(a.tarPath, dir);
      const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
      const manifest = JSON.parse(readFileSync(join(layout, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: { digest: string }[] };
      const blob = join(layout, 'blobs/sha256', manifest.layers[0]!.digest.slice(7));
      const bytes = Buffer.from(readFileSync(blob));
      bytes[bytes.length - 2000] = bytes[bytes.length - 2000]! ^ 1;
      writeFileSync(blob, bytes);
      return layout;
    }, /blob sha256:[0-9a-f]{64} is corrupt/));

  test('a docker archive holding two images', () =>
    expectFailure(async (dir) => {
      const p = join(dir, 'a.tar');
      const [l, c] = dockerEntries(dir);
      const one = { Config: 'config.json', Layers: ['l/layer.tar'] };
      await writeRawTar(p, [l!, c!, { name: 'manifest.json', body: JSON.stringify([one, one]) }]);
      return p;
    }, /lists 2 images/));
});
