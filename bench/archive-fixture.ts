import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';

/**
 * A gzipped docker-archive like `docker save | gzip` writes: `layers` plain layer tars of about
 * `totalBytes / layers` each (half random, half text), a config with their diff_ids, and
 * manifest.json last. Deterministic, and made once per size (the marker file beside it).
 */
export async function makeDockerArchive(path: string, totalBytes: number, layers: number): Promise<{ bytes: number }> {
  const marker = `${path}.complete`;
  if (existsSync(marker)) return JSON.parse(readFileSync(marker, 'utf8')) as { bytes: number };
  const per = Math.floor(totalBytes / layers);
  const pack = tar.pack();
  const done = pipeline(pack, createGzip({ level: 6 }), createWriteStream(path));
  const add = (name: string, body: Buffer) =>
    new Promise<void>((resolve, reject) => pack.entry({ name, size: body.length, mtime: new Date(0) }, body, (e) => (e ? reject(e) : resolve())));
  const diffIds: string[] = [];
  const layerNames: string[] = [];
  let counter = 0;
  for (let i = 0; i < layers; i++) {
    const layer = await layerTar(i, per, () => counter++);
    const diffid = `sha256:${createHash('sha256').update(layer).digest('hex')}`;
    diffIds.push(diffid);
    const name = `${diffid.slice(7)}/layer.tar`;
    layerNames.push(name);
    await add(name, layer);
  }
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: diffIds }, history: diffIds.map(() => ({ created_by: 'bench' })) }),
  );
  const configName = `${createHash('sha256').update(config).digest('hex')}.json`;
  await add(configName, config);
  await add('manifest.json', Buffer.from(JSON.stringify([{ Config: configName, RepoTags: ['bench/archive:latest'], Layers: layerNames }])));
  pack.finalize();
  await done;
  const info = { bytes: per * layers };
  writeFileSync(marker, JSON.stringify(info));
  return info;
}

async function layerTar(i: number, bytes: number, next: () => number): Promise<Buffer> {
  const body = Buffer.alloc(bytes);
  let off = 0;
  while (off < bytes) {
    const n = next();
    const block = n % 2 === 0 ? createHash('sha512').update(`bench:${n}`).digest() : Buffer.from(`layer ${i} line ${n} of some text\n`);
    off += block.copy(body, off);
  }
  const pack = tar.pack();
  pack.entry({ name: `layer-${i}/data.bin`, size: bytes, mtime: new Date(0), mode: 0o644 }, body);
  pack.finalize();
  const parts: Buffer[] = [];
  for await (const c of pack as unknown as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts);
}
