// Bundles the CLI into dist/bin/: one file for the start-up path and a chunk per lazily loaded
// command. Node 20 has no compile cache, and resolving, reading and compiling ~150 separate
// module files was a third of a cache hit's wall time (see the README's "Start-up" section).
// The library (dist/src) stays tsc's plain output.
import { build } from 'esbuild';

await build({
  entryPoints: { kocache: 'dist/src/cli/main.js' },
  outdir: 'dist/bin',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  logLevel: 'warning',
  // Bundled CommonJS (cacache, its helpers) calls require() for Node's built-ins.
  banner: { js: "import { createRequire as kocacheRequire } from 'node:module'; const require = kocacheRequire(import.meta.url);" },
  chunkNames: 'chunks/[name]-[hash]',
});
