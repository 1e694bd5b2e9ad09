// Bundles the CLI into dist/bin/: one file for the start-up path and a chunk per lazily loaded
// command. Node 20 has no compile cache, and resolving, reading and compiling ~150 separate
// module files was a third of a cache hit's wall time (see the README's "Start-up" section).
// The library (dist/src) stays tsc's plain output.
import { chmodSync, copyFileSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

// Chunk names carry content hashes: without a clean folder, old chunks pile up beside new ones.
rmSync('dist/bin', { recursive: true, force: true });

const asciiWidth = fileURLToPath(new URL('./string-width-ascii.mjs', import.meta.url));

// Every `string-width` import but the shim's own resolves to the shim (see string-width-ascii.mjs).
const lazyStringWidth = {
  name: 'lazy-string-width',
  setup(b) {
    b.onResolve({ filter: /^string-width$/ }, (args) => (args.importer === asciiWidth ? undefined : { path: asciiWidth }));
  },
};

await build({
  entryPoints: { main: 'dist/src/cli/main.js' },
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
  plugins: [lazyStringWidth],
  define: { KOCACHE_VERSION: JSON.stringify(JSON.parse(readFileSync('package.json', 'utf8')).version) },
});

// The executable: a shell launcher (defers NODE_EXTRA_CA_CERTS), then a CommonJS one that sizes
// libuv's thread pool and imports ./main.js.
copyFileSync('src/cli/kocache.sh', 'dist/bin/kocache');
chmodSync('dist/bin/kocache', 0o755);
copyFileSync('dist/src/cli/launch.cjs', 'dist/bin/kocache.cjs');
chmodSync('dist/bin/kocache.cjs', 0o755);
