// Bundles the CLI into dist/bin/: one CommonJS file (cli.cjs) and the V8 code cache of a real run
// (cli.cjs.codecache) that the launcher (dist/bin/kocache.cjs) hands to V8. Node 20 has no
// compile cache, and as separate modules the CLI spent most of a cache hit resolving, reading and
// compiling them (see docs/performance.md). The library (dist/src) stays tsc's output.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

rmSync('dist/bin', { recursive: true, force: true });

const asciiWidth = fileURLToPath(new URL('./string-width-ascii.mjs', import.meta.url));

// Every `string-width` import but the shim's own resolves to the shim (see string-width-ascii.mjs).
const lazyStringWidth = {
  name: 'lazy-string-width',
  setup(b) {
    b.onResolve({ filter: /^string-width$/ }, (args) => (args.importer === asciiWidth ? undefined : { path: asciiWidth }));
  },
};

const lazyAssert = fileURLToPath(new URL('./assert-lazy.mjs', import.meta.url));

// yargs' platform shim's `assert` resolves to a lazy stand-in (see assert-lazy.mjs); undici's own
// imports of node:assert are left alone (only registry commands load undici).
const lazyYargsAssert = {
  name: 'lazy-yargs-assert',
  setup(b) {
    b.onResolve({ filter: /^assert$/ }, (args) => (/yargs[\\/]lib[\\/]platform-shims[\\/]/.test(args.importer) ? { path: lazyAssert } : undefined));
  },
};

// yargs' factory calls .version() with no argument on every instance, which walks up from the
// script's folder reading each directory until it finds a package.json (~5 ms a start); main.ts
// gives the version itself. The build fails if a yargs update moves the call.
const yargsFactory = {
  name: 'yargs-factory-no-version-lookup',
  setup(b) {
    b.onLoad({ filter: /yargs[\\/]build[\\/]lib[\\/]yargs-factory\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      const call = /(yargs\.help\(\);\s*)yargs\.version\(\);/;
      if (!call.test(source)) throw new Error(`${args.path}: the factory's yargs.version() call was not found`);
      return { contents: source.replace(call, '$1'), loader: 'js' };
    });
  },
};

// yargs checks the arguments of each of its own API calls (argsert: ~60 calls, each parsing a
// signature string) and only ever warns, on the console, about a program misusing yargs' API: never
// about anything a user typed. Our calls are typed and the same on every run, and the check was
// ~1-1.5 ms of every start (parser built and run, medians of 25 hits). In the bundle it does
// nothing; the build fails if a yargs update renames it.
const yargsArgsertOff = {
  name: 'yargs-argsert-off',
  setup(b) {
    b.onLoad({ filter: /yargs[\\/]build[\\/]lib[\\/]argsert\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      if (!/export function argsert\(/.test(source) || !/console\.warn\(/.test(source)) {
        throw new Error(`${args.path}: argsert is not the warning-only check yargs-argsert-off expects`);
      }
      return { contents: 'export function argsert() {}\n', loader: 'js' };
    });
  },
};

// For the two sets of stand-ins below, which only cacache's own modules get.
const fromCacache = (args) => args.namespace === 'file' && /[\\/]node_modules[\\/]cacache[\\/]lib[\\/]/.test(args.importer);

/** Module lines exporting each of `names` as a function that calls `target`'s, found when called. */
const forwarders = (names, target) => names.map((n) => `exports.${n} = function (...args) { return ${target}.${n}.apply(this, args); };`);

// cacache's index, temp-name and content-writer modules each take a function from @npmcli/fs at
// load time, which loads all of it: its file-copy code and semver, whose ~40 regular expressions
// are built on load (~6 ms of every cache hit's index lookup, which uses neither). Inside
// cacache, `@npmcli/fs` resolves to a module of stand-ins that load the real one on first call.
// Only the destructuring form is accepted, and only the names found there are made, so the build
// fails if cacache starts using @npmcli/fs in a way the stand-ins do not cover.
const lazyNpmcliFs = {
  name: 'lazy-npmcli-fs',
  setup(b) {
    // The stand-ins' own require (namespace lazy-npmcli-fs) resolves to the real package.
    b.onResolve({ filter: /^@npmcli\/fs$/ }, (args) => (fromCacache(args) ? { path: relative(process.cwd(), args.importer), namespace: 'lazy-npmcli-fs' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'lazy-npmcli-fs' }, (args) => {
      const file = resolve(args.path);
      const source = readFileSync(file, 'utf8');
      const uses = [...source.matchAll(/require\(['"]@npmcli\/fs['"]\)/g)].length;
      const destructured = [...source.matchAll(/const \{([\w\s,]+)\} = require\(['"]@npmcli\/fs['"]\)/g)];
      const names = destructured.flatMap((m) => m[1].split(',').map((n) => n.trim()).filter(Boolean));
      if (uses === 0 || uses !== destructured.length) {
        throw new Error(`${file}: uses @npmcli/fs other than as \`const { ... } = require('@npmcli/fs')\`; update lazy-npmcli-fs`);
      }
      return { contents: `let real;\nconst load = () => (real ??= require('@npmcli/fs'));\n${forwarders(names, 'load()').join('\n')}\n`, loader: 'js', resolveDir: dirname(file) };
    });
  },
};

// cacache's index (and its temp-name helper) take fs/promises at load, and Node's fs/promises
// module loads its directory, watcher and readline modules with it: ~2 ms of every cache hit, whose
// only use of it is reading index buckets. Inside cacache, `fs/promises` resolves to stand-ins for
// every function Node's has (listed from Node itself at build time), each calling the real one when
// called, except `readFile`: a synchronous read, returned as a promise. Its one caller here is the
// index reading a bucket (a small file: the records of keys that hash alike), where a read on
// libuv's pool cost more than the read, and started the pool's threads on a hit that needs none
// (in-process, the two lookups 4.4 -> 2.0 ms, medians of 25). The build fails if any other
// bundled cacache file uses readFile.
const lazyFsPromises = {
  name: 'lazy-fs-promises',
  setup(b) {
    b.onResolve({ filter: /^fs\/promises$/ }, (args) => {
      if (!fromCacache(args)) return undefined;
      if (/\breadFile\b/.test(readFileSync(args.importer, 'utf8')) && !/[\\/]lib[\\/]entry-index\.js$/.test(args.importer)) {
        throw new Error(`${args.importer} uses readFile; lazy-fs-promises makes it synchronous for the index's buckets only`);
      }
      return { path: 'fs/promises', namespace: 'lazy-fs-promises' };
    });
    b.onLoad({ filter: /.*/, namespace: 'lazy-fs-promises' }, async () => {
      const real = (await import('node:fs/promises')).default;
      const names = Object.keys(real).filter((n) => n !== 'readFile');
      const stands = [
        ...forwarders(names.filter((n) => typeof real[n] === 'function'), 'fs.promises'),
        ...names.filter((n) => typeof real[n] !== 'function').map((n) => `Object.defineProperty(exports, '${n}', { get: () => fs.promises.${n}, enumerable: true });`),
        'exports.readFile = async (path, options) => fs.readFileSync(path, options);',
      ];
      return { contents: `const fs = require('node:fs');\n${stands.join('\n')}\n`, loader: 'js' };
    });
  },
};

// One file, no chunks: a command's modules are still evaluated only when it runs (esbuild keeps
// each dynamic import() a lazy initialiser), and V8 only pre-parses the functions it does not run.
await build({
  entryPoints: ['dist/src/cli/main.js'],
  outfile: 'dist/bin/cli.cjs',
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  logLevel: 'warning',
  // Less to read and deserialise at every start: 939 -> 696 KB with identifiers shortened, ~3 ms of
  // a hit (40 paired runs, 0.97x). Names in profiles and stack traces are the bundle's short ones:
  // profile the unbundled CLI (node dist/src/cli/main.js), which answers the same (tested), and
  // decode a stack trace from a bug report with cli.cjs.map (written beside it, never loaded).
  minifyWhitespace: true,
  minifyIdentifiers: true,
  sourcemap: 'external',
  // Licence comments go beside the bundle: what is left is ASCII, which the launcher reads as
  // Latin-1 (a one-byte string, no UTF-8 decoding).
  legalComments: 'external',
  charset: 'ascii',
  // yargs (an ES module) finds its own files through import.meta.url.
  banner: { js: "const kocacheImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  plugins: [lazyStringWidth, lazyYargsAssert, yargsFactory, lazyNpmcliFs, yargsArgsertOff, lazyFsPromises],
  define: {
    KOCACHE_VERSION: JSON.stringify(JSON.parse(readFileSync('package.json', 'utf8')).version),
    'import.meta.url': 'kocacheImportMetaUrl',
  },
});

if (/[^\x00-\x7f]/.test(readFileSync('dist/bin/cli.cjs', 'latin1'))) throw new Error('dist/bin/cli.cjs is not ASCII; the launcher reads it as Latin-1');

// The executable: a shell launcher (defers NODE_EXTRA_CA_CERTS), then a CommonJS one that sizes
// libuv's thread pool and runs cli.cjs.
copyFileSync('src/cli/kocache.sh', 'dist/bin/kocache');
chmodSync('dist/bin/kocache', 0o755);
copyFileSync('dist/src/cli/launch.cjs', 'dist/bin/kocache.cjs');
chmodSync('dist/bin/kocache.cjs', 0o755);

// The code cache comes from a build of a small tree (what other commands run beyond it V8
// compiles as usual). Taken from a miss rather than a hit: the hit measured as fast either way
// (median of 11: ~124 ms from this, ~146 ms from a hit's), and a cold build ran 0.975x.
const work = mkdtempSync(join(tmpdir(), 'kocache-codecache-'));
try {
  const tree = join(work, 'tree');
  mkdirSync(join(tree, 'bin'), { recursive: true });
  writeFileSync(join(tree, 'bin', 'app'), '#!/bin/sh\necho hello\n', { mode: 0o755 });
  writeFileSync(join(tree, 'README'), 'a tree to build once, then hit\n');
  const run = (env) => execFileSync(process.execPath, ['dist/bin/kocache.cjs', 'build', `${tree}:/app`, '--import-path', 'example.com/codecache'],
    { env: { ...process.env, KOCACHE: join(work, 'cache'), ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  run({});
  // A changed tree under a namespace built before: fingerprint, index lookup (a miss), tar, gzip,
  // content write and records, which is nearly all a hit runs and all a cold build does.
  writeFileSync(join(tree, 'README'), 'the same tree, changed\n');
  run({ KOCACHE_WRITE_CODE_CACHE: '1' });
} finally {
  rmSync(work, { recursive: true, force: true });
}
