import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { fsError } from '../errors.js';
import { traceAdd } from '../util/trace.js';

const BUF = Buffer.allocUnsafe(1 << 20);

/** sha256 hex of a file, read synchronously into one reused buffer (see walk.ts for why sync). */
export function hashFileSync(path: string, raw?: Buffer): string {
  const h = createHash('sha256');
  let fd: number;
  try {
    fd = openSync(raw ?? path, 'r');
  } catch (err) {
    throw fsError(err, path, 'read');
  }
  try {
    for (;;) {
      const n = readSync(fd, BUF, 0, BUF.length, null);
      if (n === 0) break;
      h.update(BUF.subarray(0, n));
      traceAdd('file.hash', n);
      traceAdd('file.read', n);
    }
  } catch (err) {
    throw fsError(err, path, 'read');
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}
