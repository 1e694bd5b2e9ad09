import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';

/** One layer of a hand-made archive: its files, and whether the layer tar is gzipped inside the archive. */
export interface LayerSpec {
  files: Record<string, string | Buffer>;
  gzip?: boolean;
  /** Make this layer a symlink to an earlier one (docker save's legacy trick for repeated layers). */
  sameAs?: number;
}

export interface MadeArchive {
  /** The archive file (gzipped when asked). */
  path: string;
  /** The uncompressed archive tar (also written, so tests can measure it). */
  tarPath: string;
  /** Size of the uncompressed archive tar. */
  tarSize: number;
  diffIds: string[];
  /** Uncompressed sizes of the layers that are gzipped inside the archive (each once). */
  gzippedLayerTarBytes: number;
  /** Uncompressed sizes of the distinct plain layers (what a first push must compress). */
  plainLayerTarBytes: number;
  config: Buffer;
  /** The folder laid out like the archive, before tarring. */
  root: string;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function run(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Bytes that compress a little, like binaries do: random blocks mixed with repeated text. */
export function someBytes(n: number, seed = 'x'): Buffer {
  const out = Buffer.alloc(n);
  const text = Buffer.from(`${seed} the quick brown fox jumps over the lazy dog\n`.repeat(64));
  for (let off = 0; off < n; off += 8192) {
    const chunk = (off / 8192) % 2 === 0 ? randomBytes(4096) : text;
    chunk.copy(out, off, 0, Math.min(chunk.length, n - off));
  }
  return out;
}

/**
 * A docker-archive made the way `docker save` makes one, by hand: each layer directory tarred
 * with GNU tar (--sort=name, fixed owner and mtime), some layer tars gzipped, a config with the
 * right diff_ids, and manifest.json written LAST. The whole archive is gzipped as two members when
 * `gzip` is 'multi-member' (valid gzip that fflate's gunzipSync would cut short).
 */
export function makeDockerArchive(dir: string, layers: LayerSpec[], opts: { gzip?: boolean | 'multi-member'; architecture?: string } = {}): MadeArchive {
  const root = join(dir, 'archive-root');
  mkdirSync(root, { recursive: true });
  const diffIds: string[] = [];
  const layerPaths: string[] = [];
  let gzippedLayerTarBytes = 0;
  let plainLayerTarBytes = 0;
  layers.forEach((layer, i) => {
    const id = `layer${i}`;
    mkdirSync(join(root, id));
    const name = `${id}/layer.tar`;
    layerPaths.push(name);
    if (layer.sameAs !== undefined) {
      symlinkSync(`../${layerPaths[layer.sameAs]!}`, join(root, name));
      diffIds.push(diffIds[layer.sameAs]!);
      return;
    }
    const src = join(dir, `src-${i}`);
    for (const [rel, content] of Object.entries(layer.files)) {
      mkdirSync(dirname(join(src, rel)), { recursive: true });
      writeFileSync(join(src, rel), content);
    }
    const tarFile = join(dir, `layer-${i}.tar`);
    run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', src, '-cf', tarFile, '.']);
    const tarBytes = readFileSync(tarFile);
    diffIds.push(`sha256:${sha256(tarBytes)}`);
    // Named layer.tar even when gzipped: kocache must tell by the bytes, as Nix's archives need.
    if (layer.gzip) {
      writeFileSync(join(root, name), gzipSync(tarBytes, { level: 6 }));
      gzippedLayerTarBytes += tarBytes.length;
    } else {
      writeFileSync(join(root, name), tarBytes);
      plainLayerTarBytes += tarBytes.length;
    }
  });
  const config = Buffer.from(JSON.stringify({
    architecture: opts.architecture ?? 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/bin:/bin'], Cmd: ['/bin/app'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: diffIds.map((_, i) => ({ created_by: `layer ${i}` })),
  }, null, 2));
  const configName = `${sha256(config)}.json`;
  writeFileSync(join(root, configName), config);
  writeFileSync(join(root, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: ['example/app:latest'], Layers: layerPaths }]));

  const tarPath = join(dir, 'image.tar');
  const members = [...layers.map((_, i) => `layer${i}`), configName, 'manifest.json'];
  run('tar', ['--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', root, '-cf', tarPath, ...members]);
  const tar = readFileSync(tarPath);
  let path = tarPath;
  if (opts.gzip) {
    path = join(dir, 'image.tar.gz.bin');
    if (opts.gzip === 'multi-member') {
      const half = Math.floor(tar.length / 2);
      writeFileSync(path, Buffer.concat([gzipSync(tar.subarray(0, half)), gzipSync(tar.subarray(half))]));
    } else {
      writeFileSync(path, gzipSync(tar));
    }
  }
  return { path, tarPath, tarSize: tar.length, diffIds, gzippedLayerTarBytes, plainLayerTarBytes, config, root };
}

/** An OCI layout made by skopeo from a docker-archive: `skopeo copy docker-archive:X oci:DIR:latest`. */
export function makeOciLayout(dockerArchive: string, dir: string, tag = 'latest'): string {
  const layout = join(dir, 'oci-layout-dir');
  run('/usr/bin/skopeo', ['copy', '--quiet', `docker-archive:${dockerArchive}`, `oci:${layout}:${tag}`]);
  return layout;
}

/** An OCI archive: the layout directory tarred (and gzipped when asked). */
export function tarLayout(layout: string, out: string, gzip = false): string {
  run('tar', ['--sort=name', '-C', layout, '-cf', out, '.']);
  if (!gzip) return out;
  writeFileSync(`${out}.gz`, gzipSync(readFileSync(out)));
  return `${out}.gz`;
}

/** The standard test image: four layers, two gzipped (one large, one small), a repeated layer, a few MB in all. */
export function standardLayers(): LayerSpec[] {
  return [
    { files: { 'bin/app': someBytes(2_500_000, 'app') } },
    { files: { 'etc/config.txt': 'name=demo\n', 'etc/motd': 'hello\n' }, gzip: true },
    { files: { 'usr/lib/big.so': someBytes(1_600_000, 'lib') }, gzip: true },
    { files: { 'srv/data.txt': 'small plain layer\n' } },
    { files: {}, sameAs: 0 },
  ];
}

/** One raw tar entry for hostile or broken archives GNU tar will not write. */
export interface RawEntry {
  name: string;
  body?: Buffer | string;
  type?: 'file' | 'symlink' | 'link' | 'directory';
  linkname?: string;
}

/** Writes a tar with exactly the given entries, names untouched (`..`, absolute paths and all). */
export async function writeRawTar(path: string, entries: RawEntry[]): Promise<void> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const fields: Partial<tar.Header> = { name: e.name, type: e.type ?? 'file', mode: 0o644, mtime: new Date(0) };
      if (e.linkname !== undefined) fields.linkname = e.linkname;
      const header = fields as tar.Header; // tar-stream fills in the rest
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (e.body !== undefined) pack.entry(header, Buffer.from(e.body), cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  writeFileSync(path, Buffer.concat(chunks));
}

/** A plain layer tar made by GNU tar from a few files, and its diffid. */
export function makeLayerTar(dir: string, name: string, files: Record<string, string | Buffer>): { bytes: Buffer; diffid: string } {
  const src = join(dir, `${name}-src`);
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(dirname(join(src, rel)), { recursive: true });
    writeFileSync(join(src, rel), content);
  }
  const out = join(dir, `${name}.tar`);
  run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', src, '-cf', out, '.']);
  const bytes = readFileSync(out);
  return { bytes, diffid: `sha256:${sha256(bytes)}` };
}

/** A config JSON for the given diffids. */
export function configFor(diffIds: string[]): Buffer {
  return Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: diffIds } }));
}
