import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pairMedians, medianOf, timeShell, RUNS, type Row } from './harness.js';

/**
 * Layer builds of one tree: cold (empty cache) beside `tar --sort=name | gzip -6` and
 * `| pigz -6 -p N` (what a script would run), and a cache hit beside the cold build.
 */
export function layerRows(cli: string, tree: string, work: string, jobs: number): Row[] {
  const cache = join(work, 'cache-layers');
  const gzOut = join(work, 'tree.tar.gz');
  const pigzOut = join(work, 'tree.pigz.tar.gz');
  const build = `node ${cli} build ${tree}:/app --import-path bench/tree --jobs ${jobs} > ${join(work, 'build.json')}`;
  const env = { KOCACHE: cache };
  const tarGzip = `tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C ${tree} -cf - . | gzip -6 > ${gzOut}`;
  const tarPigz = `tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C ${tree} -cf - . | pigz -6 -p ${jobs} > ${pigzOut}`;
  const wipe = () => rmSync(cache, { recursive: true, force: true });

  const [cold, gzip] = pairMedians(RUNS, () => timeShell(build, env), () => timeShell(tarGzip), wipe);
  const [cold2, pigz] = pairMedians(RUNS, () => timeShell(build, env), () => timeShell(tarPigz), wipe);
  const result = JSON.parse(readFileSync(join(work, 'build.json'), 'utf8')) as { size: number };
  const gzSize = statSync(gzOut).size;
  const coldMedian = (cold + cold2) / 2;
  // The hit: cache filled once, then timed.
  timeShell(build, env);
  const hit = medianOf(RUNS, () => timeShell(build, env));
  const sizeNote = `layer ${(result.size / 1e6).toFixed(1)} MB, gzip -6 ${(gzSize / 1e6).toFixed(1)} MB (${(((result.size - gzSize) / gzSize) * 100).toFixed(2)}%)`;
  return [
    { what: 'cold layer build (tar+gzip into the cache)', kocache: cold, baselineName: 'tar | gzip -6', baseline: gzip, note: sizeNote },
    { what: 'cold layer build', kocache: cold2, baselineName: `tar | pigz -6 -p ${jobs}`, baseline: pigz, note: 'goal <= 1.0x pigz' },
    { what: 'cache hit, unchanged tree (incl. Node start-up)', kocache: hit, baselineName: 'kocache cold build', baseline: coldMedian, note: 'goal <= 0.1x' },
  ];
}
