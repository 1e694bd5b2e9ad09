import { closeSync, constants, createReadStream, fstatSync, openSync, readSync, realpathSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { type ErrorCode, KocacheError, errnoCode, fsError } from '../errors.js';

/**
 * Files read from a folder kocache was pointed at (an OCI layout, to import or to add to). Such a
 * folder is input like any archive, so only regular files inside it are read, and never more bytes than the caller allows:
 * a link to /dev/zero would otherwise be read forever and a FIFO would block the open or the read.
 */
export interface FolderFile {
  /** Open descriptor; the reader that takes it closes it. */
  fd: number;
  size: number;
  path: string;
}

/**
 * Opens `rel` under `dir`. A link is followed only while it stays inside the folder; the file
 * found must be a regular file no bigger than `max` bytes. O_NOFOLLOW keeps a link swapped in
 * after the check from being followed; O_NONBLOCK keeps a FIFO from blocking the open itself
 * (it is then refused by its type). Returns undefined when the file does not exist.
 */
export function openInFolder(dir: string, rel: string, o: { what: string; max: number; code: ErrorCode }): FolderFile | undefined {
  const { max, code } = o;
  const what = o.what === rel ? rel : `${o.what} (${rel})`;
  const path = join(dir, rel);
  let real: string;
  try {
    const root = realpathSync(dir);
    real = realpathSync(path);
    const inside = relative(root, real);
    if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) {
      throw new KocacheError(code, `${dir}: ${what} is a link leading out of the folder; kocache reads only files inside it`);
    }
  } catch (err) {
    if (err instanceof KocacheError) throw err;
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw fsError(err, path, 'read');
  }
  let fd: number;
  try {
    fd = openSync(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    if (errnoCode(err) === 'ELOOP') throw new KocacheError(code, `${dir}: ${what} was replaced by a link while being opened`);
    throw fsError(err, path, 'read');
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new KocacheError(code, `${dir}: ${what} is not a regular file`);
    if (st.size > max) throw new KocacheError(code, `${dir}: ${what} is ${st.size} bytes, more than the ${max} it can be`);
    return { fd, size: st.size, path };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** The whole of a small file, exactly the size fstat gave (a file growing meanwhile is cut there). */
export function readAll(f: FolderFile): Buffer {
  const out = Buffer.alloc(f.size);
  let have = 0;
  try {
    while (have < f.size) {
      const n = readSync(f.fd, out, have, f.size - have, have);
      if (n === 0) break;
      have += n;
    }
  } catch (err) {
    throw fsError(err, f.path, 'read');
  } finally {
    closeSync(f.fd);
  }
  return out.subarray(0, have);
}

/** A file's bytes as a stream, at most the size fstat gave; closes the descriptor at the end. */
export async function* streamAll(f: FolderFile): AsyncGenerator<Buffer> {
  if (f.size === 0) {
    closeSync(f.fd);
    return;
  }
  try {
    for await (const chunk of createReadStream('', { fd: f.fd, start: 0, end: f.size - 1, highWaterMark: 1 << 20 })) yield chunk as Buffer;
  } catch (err) {
    throw fsError(err, f.path, 'read');
  }
}
