import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compressionRows } from './compression.js';
import { makeNodeModules, makeTree } from './fixtures.js';
import { machineLine, renderTable, RUNS, type Row } from './harness.js';
import { layerRows } from './layers.js';
import { nodeLineRows } from './node-lines.js';
import { registryRows } from './registry-rows.js';
import { registryCacheRows } from './registry-cache.js';
import { sameInputRows } from './same-inputs.js';

// `npm run bench`: every row is kocache beside the tool a user would otherwise run, on the same
// input, in the same run, with the ratio. BENCH_SIZE_MB (tree, default 100), BENCH_ARCHIVE_MB
// (default 300), BENCH_ARCHIVE_LAYERS (default 50), BENCH_NODE_MODULES_MB (default 500), BENCH_RUNS
// (default 3); BENCH_ONLY=registry-cache runs the registry-cache rows alone, BENCH_ONLY=node-lines
// the Node lines and zstd rows alone.
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
// The command as npm installs it: the shell launcher, which starts Node.
const cli = join(root, 'dist', 'bin', 'kocache');
const work = resolve(process.env.BENCH_DIR ?? join(root, 'bench', '.work'));
const sizeMb = Number(process.env.BENCH_SIZE_MB ?? 100);
const jobs = availableParallelism();
const archiveMb = Number(process.env.BENCH_ARCHIVE_MB ?? 300);
const archiveLayers = Number(process.env.BENCH_ARCHIVE_LAYERS ?? 50);
const nodeModulesMb = Number(process.env.BENCH_NODE_MODULES_MB ?? 500);

async function main(): Promise<void> {
  mkdirSync(work, { recursive: true });
  const tree = join(work, `tree-${sizeMb}mb`);
  const made = makeTree(tree, sizeMb * 1e6);
  const tarPath = join(work, `tree-${sizeMb}mb.tar`);
  execFileSync('bash', ['-c', `tar --sort=name -C ${tree} -cf ${tarPath} .`]);
  const rows: Row[] = [];
  const log = (s: string) => process.stderr.write(`${s}\n`);
  log(`tree: ${made.files} files, ${(made.bytes / 1e6).toFixed(0)} MB; ${RUNS} runs per figure (medians)`);
  // BENCH_ONLY=registry-cache: the fresh-runner rows alone, printed, the docs' tables left as they are.
  if (process.env.BENCH_ONLY === 'registry-cache') {
    const trees = [{ name: `tree-${sizeMb}mb`, path: tree }];
    if (nodeModulesMb > 0) {
      const nm = join(work, `node-modules-${nodeModulesMb}mb`);
      makeNodeModules(nm, nodeModulesMb * 1e6);
      trees.push({ name: `node-modules-${nodeModulesMb}mb`, path: nm });
    }
    process.stdout.write(`Machine: ${machineLine()}\n\n${renderTable(await registryCacheRows(cli, trees, work))}\n`);
    return;
  }
  // BENCH_ONLY=node-lines: issue 17's rows alone, printed, the docs' tables left as they are.
  if (process.env.BENCH_ONLY === 'node-lines') {
    process.stdout.write(`Machine: ${machineLine()}\n\n${renderTable(nodeLineRows(root, cli, tree, work, jobs))}\n`);
    return;
  }
  // Whole commands first, the in-process compression rows last: those hold hundreds of MB in this
  // process, and its garbage collector then ran on a core beside the commands being timed (a
  // cache hit measured ~213 ms after them, ~149 ms in a fresh process).
  log('layer builds...');
  const layers = layerRows(cli, tree, work, jobs);
  log('Node lines and zstd...');
  const lines = nodeLineRows(root, cli, tree, work, jobs);
  log('registry: publish and archive push...');
  const registry = await registryRows(cli, tree, work, archiveMb, archiveLayers, nodeModulesMb);
  // The registry rows made the node_modules tree (nodeModulesMb, under its own folder).
  log('registry cache: fresh runners...');
  const trees = [{ name: `tree-${sizeMb}mb`, path: tree }];
  if (nodeModulesMb > 0) trees.push({ name: `node-modules-${nodeModulesMb}mb`, path: join(work, `node-modules-${nodeModulesMb}mb`) });
  const regcache = await registryCacheRows(cli, trees, work);
  log('registry: platforms and repositories...');
  const same = await sameInputRows(cli, tree, work);
  log('compression...');
  rows.push(...(await compressionRows(tarPath, jobs)), ...layers, ...lines, ...registry, ...regcache, ...same);
  const table = renderTable(rows);
  const text = `Machine: ${machineLine()}\nInput: ${made.files} files, ${(made.bytes / 1e6).toFixed(0)} MB; median of ${RUNS} runs\n\n${table}\n`;
  writeFileSync(join(work, 'results.md'), text);
  for (const doc of ['docs/benchmarks.md', 'README.md']) writeTable(join(root, doc), text);
  process.stdout.write(text);
}

// The table goes between the markers of the docs that show it, so they never hold figures of
// another run than the last one.
function writeTable(file: string, text: string): void {
  const begin = '<!-- bench:begin -->\n';
  const end = '<!-- bench:end -->';
  const doc = readFileSync(file, 'utf8');
  const a = doc.indexOf(begin);
  const b = doc.indexOf(end, a);
  if (a < 0 || b < 0) throw new Error(`${file} has no bench markers`);
  writeFileSync(file, doc.slice(0, a + begin.length) + text + doc.slice(b));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
