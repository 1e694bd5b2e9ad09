// Bundles the CLI into dist/bin/: one CommonJS file (cli.cjs) and the V8 code caches of a real run
// (cli.cjs.v8-<V8 version>.codecache, one per Node line at hand) that the launcher (dist/bin/kocache.cjs) hands to V8. Node 20 has no
// compile cache, and as separate modules the CLI spent most of a cache hit resolving, reading and
// compiling them (see docs/performance.md). The library (dist/src) stays tsc's output.
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { startupPlugins } from '../src/cli/startup/bundle-plugins.mjs';
import { startCodeCacheRegistry } from './codecache-registry.mjs';

const execFileAsync = promisify(execFile);

rmSync('dist/bin', { recursive: true, force: true });

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
  plugins: startupPlugins,
  define: {
    KOCACHE_VERSION: JSON.stringify(JSON.parse(readFileSync('package.json', 'utf8')).version),
    'import.meta.url': 'kocacheImportMetaUrl',
  },
});

if (/[^\x00-\x7f]/.test(readFileSync('dist/bin/cli.cjs', 'latin1'))) throw new Error('dist/bin/cli.cjs is not ASCII; the launcher reads it as Latin-1');

// The executable: a shell launcher (defers NODE_EXTRA_CA_CERTS), then a CommonJS one that sizes
// libuv's thread pool and runs cli.cjs.
copyFileSync('src/cli/startup/kocache.sh', 'dist/bin/kocache');
chmodSync('dist/bin/kocache', 0o755);
copyFileSync('dist/src/cli/startup/launch.cjs', 'dist/bin/kocache.cjs');
chmodSync('dist/bin/kocache.cjs', 0o755);

// The code cache comes from a run of `publish` that builds a small tree (what other commands run
// beyond it V8 compiles as usual): the layer build and the registry path, to a stand-in registry of
// this script's (codecache-registry.mjs). Taken from a miss rather than a hit: the hit measured as
// fast either way (median of 11: ~124 ms from this, ~146 ms from a hit's), and a cold build ran
// 0.975x; a publish to a second repository ran 0.92x from a cache that held the registry path too
// (docs/performance.md). Made by this Node, and by each other Node line the project installed for
// its tests (scripts/install-node.sh), so a bundle built here starts on those lines as one built by
// them would: a user builds with the Node they run (docs/performance.md, the register).
async function makeCodeCache(node, registry) {
  const work = mkdtempSync(join(tmpdir(), 'kocache-codecache-'));
  try {
    const tree = join(work, 'tree');
    mkdirSync(join(tree, 'bin'), { recursive: true });
    mkdirSync(join(work, 'docker'));
    writeFileSync(join(tree, 'bin', 'app'), '#!/bin/sh\necho hello\n', { mode: 0o755 });
    writeFileSync(join(tree, 'README'), 'a tree to build once, then hit\n');
    // Asynchronous: the stand-in registry answers from this process's event loop. An empty docker
    // config: no credential helper of the user's is asked about the stand-in.
    const run = (args, env) => execFileAsync(node, ['dist/bin/kocache.cjs', ...args, '--quiet'],
      { env: { ...process.env, KOCACHE: join(work, 'cache'), DOCKER_CONFIG: join(work, 'docker'), ...env } });
    const build = ['build', `${tree}:/app`, '--import-path', 'example.com/codecache'];
    await run(build, {});
    // A changed tree under a namespace built before: fingerprint, index lookup (a miss), tar, gzip,
    // content write and records, which is nearly all a hit runs and all a cold build does; then
    // the image, its upload as it is built, and the manifest.
    writeFileSync(join(tree, 'README'), 'the same tree, changed\n');
    const write = { KOCACHE_WRITE_CODE_CACHE: '1' };
    if (registry) {
      try {
        await run(['publish', '--base', 'scratch', '--import-path', 'example.com/codecache', '--repo', `${registry}/codecache/app:v1`,
          '--insecure-registry', registry, `${tree}:/app`], write);
        return;
      } catch (err) {
        console.error(`bundle-cli: the code cache from a build only (the publish to the stand-in failed: ${firstLine(err)})`);
        writeFileSync(join(tree, 'README'), 'changed again, so that the build below is a miss\n');
      }
    }
    await run(build, write);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function firstLine(err) {
  return err instanceof Error ? err.message.split('\n')[0] : String(err);
}

// No loopback to listen on is no reason to fail the build: the cache is then made by a build alone.
const registry = await startCodeCacheRegistry().catch((err) => {
  console.error(`bundle-cli: no stand-in registry for the code cache: ${firstLine(err)}`);
  return undefined;
});
try {
  await makeCodeCache(process.execPath, registry?.host);
  const made = new Set([process.versions.v8]);
  const installed = existsSync('node_modules/.cache') ? readdirSync('node_modules/.cache').filter((d) => /^node\d+$/.test(d)).sort() : [];
  for (const line of installed) {
    const node = join('node_modules/.cache', line, 'node_modules/.bin/node');
    // Another line's cache only speeds up its start: one that cannot be made is said and skipped.
    try {
      const v8 = execFileSync(node, ['-p', 'process.versions.v8'], { encoding: 'utf8' }).trim();
      if (made.has(v8)) continue;
      await makeCodeCache(node, registry?.host);
      made.add(v8);
    } catch (err) {
      console.error(`bundle-cli: no code cache for ${line}: ${firstLine(err)}`);
    }
  }
} finally {
  await registry?.stop();
}
