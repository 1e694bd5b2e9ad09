import { readdirSync } from 'node:fs';

/**
 * Whether the tree at `root` holds at least `n` entries: its folders listed breadth first, names
 * only (no lstat), stopping at the `n`th entry. A few readdir calls for a big tree; for a small
 * one, its folders, which the walk after it then finds in the kernel's cache.
 */
export function hasAtLeastEntries(root: string, n: number): boolean {
  const dirs = [root];
  let seen = 0;
  for (let i = 0; i < dirs.length; i++) {
    const dir = dirs[i]!;
    let names;
    try {
      names = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue; // not a folder (a one-file layer), or unreadable: the walk reports what matters
    }
    seen += names.length;
    if (seen >= n) return true;
    for (const d of names) if (d.isDirectory()) dirs.push(`${dir}/${d.name}`);
  }
  return false;
}
