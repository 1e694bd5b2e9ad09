import { once } from 'node:events';
import { rmSync, type WriteStream } from 'node:fs';

/**
 * Gives up on a temp file being written: closes its stream, then removes it. In that order: the
 * file may still be being opened, and removing it before the stream has closed let the open
 * create it again afterwards (a leftover temp file, seen in a test run).
 */
export async function abandonTempFile(out: WriteStream, tmp: string): Promise<void> {
  if (!out.closed) {
    const closed = once(out, 'close');
    out.destroy();
    await closed.catch(() => undefined);
  }
  rmSync(tmp, { force: true });
}
