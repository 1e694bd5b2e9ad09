import { posix } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { KocacheError } from '../errors.js';

/** A regular file in an archive. `body` must be read to the end (or abandoned) before the next entry. */
export interface ArchiveFile {
  type: 'file';
  name: string;
  size: number;
  body: AsyncIterable<Buffer>;
}

/** A symbolic or hard link inside an archive, with its target resolved to an archive path. */
export interface ArchiveLink {
  type: 'link';
  name: string;
  target: string;
}

export type ArchiveEntry = ArchiveFile | ArchiveLink;

/**
 * An archive member name as a clean relative path (`./a//b` -> `a/b`). Absolute names and names
 * that climb out with `..` are refused: kocache never writes them anywhere, but an archive
 * carrying them is hostile or broken and the user should know.
 */
export function entryPath(raw: string, archive: string): string {
  if (raw.startsWith('/')) throw new KocacheError('archive', `${archive}: entry ${JSON.stringify(raw)} has an absolute path`);
  if (raw.split('/').includes('..')) throw new KocacheError('archive', `${archive}: entry ${JSON.stringify(raw)} climbs out of the archive with ..`);
  const clean = posix.normalize(raw).replace(/\/+$/, '');
  return clean === '.' ? '' : clean.replace(/^\.\//, '');
}

/**
 * Where a link points, as an archive path. Docker's legacy `docker save` writes a repeated layer
 * as a symlink `<id>/layer.tar -> ../<other>/layer.tar`, so links inside the archive are fine;
 * absolute targets and targets above the archive root are refused.
 */
export function linkTarget(name: string, link: string, symbolic: boolean, archive: string): string {
  const bad = (why: string) => new KocacheError('archive', `${archive}: link ${JSON.stringify(name)} -> ${JSON.stringify(link)} ${why}`);
  if (link.startsWith('/')) throw bad('points to an absolute path outside the archive');
  const joined = symbolic ? posix.normalize(posix.join(posix.dirname(name), link)) : posix.normalize(link);
  if (joined === '..' || joined.startsWith('../')) throw bad('leaves the archive');
  return joined.replace(/^\.\//, '').replace(/\/+$/, '');
}

/** Reads a tar stream entry by entry, once, without buffering file bodies. */
export async function* readTarEntries(source: AsyncIterable<Uint8Array>, archive: string): AsyncGenerator<ArchiveEntry> {
  const extract = tar.extract();
  const input = Readable.from(source, { objectMode: false });
  let inputError: unknown;
  input.on('error', (err) => {
    inputError = err;
    extract.destroy(err);
  });
  input.pipe(extract);
  let sawEntry = false;
  try {
    for await (const entry of extract) {
      sawEntry = true;
      const h = entry.header;
      const name = entryPath(h.name, archive);
      if (h.type === 'file' || h.type === 'contiguous-file') {
        yield { type: 'file', name, size: h.size ?? 0, body: entryBody(entry as AsyncIterable<Buffer>, archive) };
      } else if (h.type === 'symlink' || h.type === 'link') {
        yield { type: 'link', name, target: linkTarget(name, h.linkname ?? '', h.type === 'symlink', archive) };
      }
      // Directories, devices and FIFOs carry nothing an image archive needs.
      entry.resume();
    }
  } catch (err) {
    if (inputError !== undefined) throw inputError;
    if (err instanceof KocacheError) throw err;
    throw tarError(err, archive);
  } finally {
    input.destroy();
    extract.destroy();
  }
  if (inputError !== undefined) throw inputError;
  if (!sawEntry) throw new KocacheError('archive', `${archive}: the tar archive is empty`);
}

/** An entry's bytes; a tar cut short fails here, inside the consumer's loop, so it is mapped here too. */
async function* entryBody(entry: AsyncIterable<Buffer>, archive: string): AsyncGenerator<Buffer> {
  try {
    yield* entry;
  } catch (err) {
    if (err instanceof KocacheError) throw err;
    throw tarError(err, archive);
  }
}

function tarError(err: unknown, archive: string): KocacheError {
  const msg = err instanceof Error ? err.message : String(err);
  const why = /unexpected end/i.test(msg) ? 'truncated tar archive (unexpected end of data)'
    : /invalid tar header/i.test(msg) ? 'not a valid tar archive (bad tar header)'
    : `unreadable tar archive (${msg})`;
  return new KocacheError('archive', `${archive}: ${why}`, { cause: err });
}
