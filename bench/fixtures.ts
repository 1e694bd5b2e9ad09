import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A deterministic source tree that looks like build output: some large binaries (half random,
 * half repetitive, so gzip has real work), many small text files in nested folders, a few
 * symlinks. The same seed and size give the same bytes on every machine.
 */
export function makeTree(dir: string, totalBytes: number, seed = 'kocache'): { files: number; bytes: number } {
  // The marker sits beside the tree, not in it, so it is not part of any layer.
  const marker = `${dir}.complete`;
  if (existsSync(marker)) return JSON.parse(readFileSync(marker, 'utf8')) as { files: number; bytes: number };
  mkdirSync(dir, { recursive: true });
  let counter = 0;
  const stream = (n: number): Buffer => {
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const block = createHash('sha256').update(`${seed}:${counter++}`).digest();
      off += block.copy(out, off);
    }
    return out;
  };
  const words = ['func', 'return', 'import', 'const', 'package', 'struct', 'error', 'string', 'nil', 'ctx', 'layer', 'digest', 'cache'];
  const text = (n: number): Buffer => {
    const parts: string[] = [];
    let len = 0;
    let i = counter++;
    while (len < n) {
      const w = `${words[i % words.length]}${i % 7 === 0 ? '\n' : ' '}`;
      parts.push(w);
      len += w.length;
      i = (i * 1103515245 + 12345) >>> 0;
    }
    return Buffer.from(parts.join('').slice(0, n));
  };
  let bytes = 0;
  let files = 0;
  // ~60% in a few large binaries: half random, half text.
  const big = Math.floor(totalBytes * 0.6);
  for (let i = 0; i < 4; i++) {
    const n = Math.floor(big / 4);
    const body = Buffer.concat([stream(Math.floor(n / 2)), text(n - Math.floor(n / 2))]);
    mkdirSync(join(dir, 'bin'), { recursive: true });
    writeFileSync(join(dir, 'bin', `tool-${i}`), body, { mode: 0o755 });
    bytes += n;
    files++;
  }
  // The rest as small files (4-64 KiB) in nested folders.
  let i = 0;
  while (bytes < totalBytes) {
    const n = 4096 + ((i * 7919) % 61440);
    const sub = join(dir, 'lib', `pkg${i % 23}`, `mod${i % 7}`);
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, `file-${i}.txt`), i % 3 === 0 ? stream(n) : text(n));
    bytes += n;
    files++;
    i++;
  }
  writeFileSync(marker, JSON.stringify({ files, bytes }));
  return { files, bytes };
}
