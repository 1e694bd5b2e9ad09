import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pairMedians, timeShell, RUNS, type Row } from './harness.js';

const LINES = ['20', '22', '24'];

/** Each supported line's `bin` folder: the machine's `node` for its own line, scripts/install-node.sh's for the others. */
function lineBins(root: string): Map<string, string | undefined> {
  const own = process.versions.node.split('.')[0]!;
  const others = LINES.filter((l) => l !== own);
  const dirs = execFileSync('bash', [join(root, 'scripts', 'install-node.sh'), ...others], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n');
  const out = new Map<string, string | undefined>();
  for (const l of LINES) out.set(l, l === own ? undefined : dirs[others.indexOf(l)]);
  return out;
}

/**
 * Issue 17's rows. Per Node line, a hit beside a cold build (runs paired), the CLI as built here
 * (its build-time code cache is this Node's: the other lines make a code cache at run time, as an
 * installed kocache built elsewhere would). Then zstd on the newest line: a cold build beside
 * `tar | zstd -3 -T<jobs>` and beside the gzip cold build, with sizes against gzip -6.
 */
export function nodeLineRows(root: string, cli: string, tree: string, work: string, jobs: number): Row[] {
  const rows: Row[] = [];
  const tarCmd = `tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C ${tree} -cf - .`;
  const bins = lineBins(root);
  let newest: { version: string; env: Record<string, string> } | undefined;
  for (const [line, bin] of bins) {
    const env: Record<string, string> = bin ? { PATH: `${bin}:${process.env['PATH'] ?? ''}` } : {};
    const version = execFileSync('node', ['-p', 'process.version'], { env: { ...process.env, ...env }, encoding: 'utf8' }).trim();
    const cold = { ...env, KOCACHE: join(work, `cache-node${line}-cold`) };
    const hit = { ...env, KOCACHE: join(work, `cache-node${line}-hit`) };
    const build = `${cli} build ${tree}:/app --import-path bench/lines --jobs ${jobs} > /dev/null`;
    rmSync(hit.KOCACHE, { recursive: true, force: true });
    timeShell(build, hit); // fills the cache
    timeShell(build, hit); // a hit: on the other lines, it makes the run-time code cache
    const wipe = () => rmSync(cold.KOCACHE, { recursive: true, force: true });
    const [h, c] = pairMedians(Math.max(RUNS, 9), () => timeShell(build, hit), () => timeShell(build, cold), undefined, wipe);
    rows.push({ what: `Node ${version}: cache hit, unchanged tree`, kocache: h, baselineName: `Node ${version} cold build`, baseline: c, note: 'goal <= 0.1x; runs paired' });
    newest = { version, env };
  }

  const { version, env } = newest!;
  const zCache = join(work, 'cache-zstd');
  const gCache = join(work, 'cache-gzip');
  const zOut = join(work, 'zstd.json');
  const gOut = join(work, 'gzip.json');
  const zstdBuild = `${cli} build ${tree}:/app --import-path bench/zstd --jobs ${jobs} --compression zstd > ${zOut}`;
  const gzipBuild = `${cli} build ${tree}:/app --import-path bench/zstd --jobs ${jobs} > ${gOut}`;
  const tarZstd = `${tarCmd} | zstd -3 -T${jobs} -q -c > ${join(work, 'tree.tar.zst')}`;
  const wipeZ = () => rmSync(zCache, { recursive: true, force: true });
  const wipeG = () => rmSync(gCache, { recursive: true, force: true });
  const [z1, cli1] = pairMedians(RUNS, () => timeShell(zstdBuild, { ...env, KOCACHE: zCache }), () => timeShell(tarZstd), wipeZ);
  const [z2, g2] = pairMedians(RUNS, () => timeShell(zstdBuild, { ...env, KOCACHE: zCache }), () => timeShell(gzipBuild, { ...env, KOCACHE: gCache }), wipeZ, wipeG);
  const zSize = (JSON.parse(readFileSync(zOut, 'utf8')) as { size: number }).size;
  const gSize = (JSON.parse(readFileSync(gOut, 'utf8')) as { size: number }).size;
  const gz6 = join(work, 'tree.tar.gz');
  try {
    statSync(gz6);
  } catch {
    timeShell(`${tarCmd} | gzip -6 > ${gz6}`);
  }
  const gz6Size = statSync(gz6).size;
  const cliSize = statSync(join(work, 'tree.tar.zst')).size;
  const mb = (n: number) => (n / 1e6).toFixed(1);
  rows.push(
    { what: `cold layer build, --compression zstd (level 3, Node ${version})`, kocache: z1, baselineName: `tar | zstd -3 -T${jobs}`, baseline: cli1, note: `layer ${mb(zSize)} MB, zstd -3 ${mb(cliSize)} MB` },
    { what: `cold layer build, --compression zstd (Node ${version})`, kocache: z2, baselineName: 'kocache gzip cold build', baseline: g2, note: `goal <= 0.4x; zstd ${mb(zSize)} MB, gzip ${mb(gSize)} MB, gzip -6 ${mb(gz6Size)} MB` },
  );
  return rows;
}
