import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureOwnFolder } from './damage.js';

/**
 * What this cache has recorded a build under, one small file each: `built/<hash of name>`,
 * holding the name. Names are `tree/<tar-spec>` (src/cache/keys.ts: treeMark), and
 * `regcache/<registry>/<repository>` for the registry cache's memos; the first key
 * scheme's `bin/<import-path>/<platform>` marks are still read. Where there is none, no
 * fingerprint can hit, so `kocache build` need not fingerprint a tree before tarring it: it
 * fingerprints the bytes as the tar writer reads them, and the tree is read once
 * (src/layer/build.ts). The mark is made before the first record, so a name with records always
 * has it; a mark without records (gc dropped them) only costs the fingerprint pass it used to.
 */
function markPath(cacheDir: string, namespace: string): string {
  return join(cacheDir, 'built', createHash('sha256').update(namespace).digest('hex').slice(0, 32));
}

export function hasBuilt(cacheDir: string, namespace: string): boolean {
  return existsSync(markPath(cacheDir, namespace));
}

export function markBuilt(cacheDir: string, namespace: string): void {
  const path = markPath(cacheDir, namespace);
  if (existsSync(path)) return;
  // A file in the folder's place (put there by hand) is replaced: marks are hints kocache redoes.
  ensureOwnFolder(join(cacheDir, 'built'));
  // The content is only for people looking in; a torn write still leaves the file, which is the mark.
  // Not writing it (a full disk) only costs the next build the fingerprint pass it would skip.
  try {
    writeFileSync(path, `${namespace}\n`);
  } catch {
    /* see above */
  }
}
