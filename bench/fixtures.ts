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

/**
 * A node_modules-like tree: many packages, each with package.json, README, LICENSE, a lib/ of
 * small modules, a minified bundle with its source map, and now and then a binary asset (random
 * bytes: .wasm, .png). Small files dominate (median ~2 KB) as in a real node_modules. Deterministic
 * for a seed and size.
 */
export function makeNodeModules(dir: string, totalBytes: number, seed = 'kocache-nm'): { files: number; bytes: number } {
  const marker = `${dir}.complete`;
  if (existsSync(marker)) return JSON.parse(readFileSync(marker, 'utf8')) as { files: number; bytes: number };
  let x = 0;
  for (const c of seed) x = (x * 31 + c.charCodeAt(0)) >>> 0;
  // mulberry32: an LCG's correlated draws made the text repeat (it gzipped 50:1)
  const rand = () => {
    x = (x + 0x6d2b79f5) >>> 0;
    let t = x;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const words = ['function', 'return', 'const', 'module', 'exports', 'require', 'this', 'value', 'options', 'callback', 'undefined', 'null', 'prototype', 'length', 'object', 'string', 'error', 'var', 'if', 'else', 'for'];
  const text = (n: number): Buffer => {
    const parts: string[] = [];
    let len = 0;
    while (len < n) {
      const r = rand();
      const w = r < 0.1 ? String(Math.floor(rand() * 1e6)) : r < 0.13 ? `_${Math.floor(rand() * 1e4).toString(36)}` : words[Math.floor(rand() * words.length)]!;
      const sep = rand() < 0.1 ? ';\n' : rand() < 0.2 ? '(' : ' ';
      parts.push(w, sep);
      len += w.length + sep.length;
    }
    return Buffer.from(parts.join('').slice(0, n));
  };
  const noise = (n: number): Buffer => {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = (rand() * 256) | 0;
    return out;
  };
  let bytes = 0;
  let files = 0;
  const put = (path: string, body: Buffer) => {
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, body);
    bytes += body.length;
    files++;
  };
  for (let p = 0; bytes < totalBytes; p++) {
    const pkg = join(dir, 'node_modules', p % 5 === 0 ? `@scope${p % 17}/pkg-${p}` : `pkg-${p}`);
    put(join(pkg, 'package.json'), Buffer.from(JSON.stringify({ name: `pkg-${p}`, version: `1.${p % 13}.${p % 7}`, main: 'lib/index.js', license: 'MIT' }, null, 2)));
    put(join(pkg, 'README.md'), text(500 + Math.floor(rand() * 4000)));
    put(join(pkg, 'LICENSE'), Buffer.from(`MIT License\n\nCopyright (c) ${p}\n\nPermission is hereby granted, free of charge, to any person obtaining a copy of this software.\n`));
    const mods = 2 + Math.floor(rand() * 14);
    for (let m = 0; m < mods; m++) put(join(pkg, 'lib', `m${m}.js`), text(200 + Math.floor(rand() * rand() * 12000)));
    if (p % 3 === 0) {
      const n = 5000 + Math.floor(rand() * 60000);
      put(join(pkg, 'dist', 'index.min.js'), text(n));
      put(join(pkg, 'dist', 'index.min.js.map'), text(Math.floor(n * 1.5)));
    }
    if (p % 29 === 0) put(join(pkg, 'assets', p % 2 ? 'logo.png' : 'core.wasm'), noise(20000 + Math.floor(rand() * 200000)));
  }
  writeFileSync(marker, JSON.stringify({ files, bytes }));
  return { files, bytes };
}
