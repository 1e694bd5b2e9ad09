import { once } from 'node:events';
import { createReadStream, readFileSync } from 'node:fs';
import tar from 'tar-stream';
import { KocacheError, fsError } from '../errors.js';
import type { SourceEntry } from './walk.js';
import type { TarOptions } from './tarspec.js';

const SMALL_FILE = 4 << 20;

/**
 * A file executable by its owner becomes 0755, any other file 0644, directories 0755: the layer is
 * the same whatever the umask of the machine that built it.
 */
function layerMode(e: SourceEntry): number {
  if (e.type === 'directory') return 0o755;
  if (e.type === 'symlink') return 0o777;
  return e.mode & 0o100 ? 0o755 : 0o644;
}

function parentsOf(path: string): string[] {
  const parts = path.split('/').filter(Boolean);
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join('/'));
  return out;
}

/**
 * A reproducible tar of `entries` placed at `dest`: sorted entries, fixed mtime, uid/gid 0 with
 * empty names, directories with a trailing slash, symlinks kept as links, long and non-ASCII
 * names through PAX headers (tar-stream switches to PAX when ustar cannot hold a name).
 */
export function packLayer(entries: readonly SourceEntry[], opts: TarOptions, onBytes?: (n: number) => void): AsyncIterable<Uint8Array> {
  const pack = tar.pack();
  const mtime = new Date(opts.mtime * 1000);
  const dest = opts.dest.replace(/^\/+/, '');
  const base = { uid: 0, gid: 0, uname: '', gname: '', mtime };

  const add = (fields: Partial<tar.Header>, body?: Buffer) =>
    new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      const header = fields as tar.Header; // tar-stream fills in what is left out
      if (body) pack.entry(header, body, cb);
      else pack.entry(header, cb);
    });

  const produce = async () => {
    // The folders above the destination, so the image has them with known modes.
    for (const dir of parentsOf(dest)) {
      await add({ ...base, name: `${dir}/`, type: 'directory', mode: 0o755 });
    }
    for (const e of entries) {
      const name = e.rel === '' ? dest : dest ? `${dest}/${e.rel}` : e.rel;
      if (name === '') continue; // the root directory placed at / has no entry of its own
      const mode = layerMode(e);
      if (e.type === 'directory') {
        await add({ ...base, name: `${name}/`, type: 'directory', mode });
      } else if (e.type === 'symlink') {
        await add({ ...base, name, type: 'symlink', mode, linkname: e.linkTarget ?? '' });
      } else if (e.size <= SMALL_FILE) {
        let body: Buffer;
        try {
          body = readFileSync(e.abs);
        } catch (err) {
          throw fsError(err, e.abs, 'read');
        }
        if (body.length !== e.size) throw changedError(e);
        await add({ ...base, name, type: 'file', mode, size: e.size }, body);
        onBytes?.(body.length);
      } else {
        await streamFile(pack, { ...base, name, type: 'file', mode, size: e.size }, e, onBytes);
      }
    }
    pack.finalize();
  };
  produce().catch((err: unknown) => pack.destroy(err instanceof Error ? err : new Error(String(err))));
  return pack as unknown as AsyncIterable<Uint8Array>;
}

async function streamFile(pack: tar.Pack, fields: Partial<tar.Header>, e: SourceEntry, onBytes?: (n: number) => void): Promise<void> {
  let finished!: Promise<void>;
  const sink = await new Promise<NodeJS.WritableStream>((resolve, reject) => {
    finished = new Promise<void>((res, rej) => {
      const s = pack.entry(fields as tar.Header, (err?: Error | null) => (err ? rej(err) : res()));
      resolve(s as unknown as NodeJS.WritableStream);
    });
    finished.catch(reject);
  });
  let written = 0;
  try {
    for await (const chunk of createReadStream(e.abs, { highWaterMark: 1 << 20 })) {
      const buf = chunk as Buffer;
      written += buf.length;
      if (written > e.size) throw changedError(e);
      onBytes?.(buf.length);
      if (!sink.write(buf)) await once(sink as unknown as NodeJS.EventEmitter, 'drain');
    }
  } catch (err) {
    if (err instanceof KocacheError) throw err;
    throw fsError(err, e.abs, 'read');
  }
  if (written !== e.size) throw changedError(e);
  sink.end();
  await finished;
}

function changedError(e: SourceEntry): KocacheError {
  return new KocacheError('input', `${e.abs} changed while it was being read; build again`);
}
