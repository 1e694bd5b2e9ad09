import { appendFileSync, readFileSync, rmSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { DEFAULT_GZIP } from '../src/compress/gzip.js';
import { pairMedians, timeShell, RUNS, type Row } from './harness.js';

/**
 * Layer builds of one tree: cold (empty cache) beside `tar --sort=name | gzip -6` and
 * `| pigz -6 -p N` (what a script would run), and a cache hit beside the cold build.
 */
export function layerRows(cli: string, tree: string, work: string, jobs: number): Row[] {
  const cache = join(work, 'cache-layers');
  const gzOut = join(work, 'tree.tar.gz');
  const pigzOut = join(work, 'tree.pigz.tar.gz');
  const build = `${cli} build ${tree}:/app --import-path bench/tree --jobs ${jobs} > ${join(work, 'build.json')}`;
  const env = { KOCACHE: cache };
  const tarGzip = `tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C ${tree} -cf - . | gzip -6 > ${gzOut}`;
  const tarPigz = `tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C ${tree} -cf - . | pigz -6 -p ${jobs} > ${pigzOut}`;
  const wipe = () => rmSync(cache, { recursive: true, force: true });

  const [cold, gzip] = pairMedians(RUNS, () => timeShell(build, env), () => timeShell(tarGzip), wipe);
  const [cold2, pigz] = pairMedians(RUNS, () => timeShell(build, env), () => timeShell(tarPigz), wipe);
  const result = JSON.parse(readFileSync(join(work, 'build.json'), 'utf8')) as { size: number };
  const gzSize = statSync(gzOut).size;
  // The same level as pigz, for a like-for-like row (kocache's default is level 5: see docs/compression.md).
  const [cold6, pigz6] = pairMedians(RUNS, () => timeShell(`${build.replace(' > ', ' --level 6 > ')}`, env), () => timeShell(tarPigz), wipe);

  // The hit, from a cache of its own filled once, paired with cold builds (A B A B) as every other
  // row is with its baseline: on a shared machine speed drifts from minute to minute (the same hit
  // measured 71-123 ms within one minute here), and a ratio of medians taken minutes apart carries
  // that drift. More runs than elsewhere: a hit is short, so noise is a larger share of it.
  const hitEnv = { KOCACHE: join(work, 'cache-hit') };
  rmSync(hitEnv.KOCACHE, { recursive: true, force: true });
  timeShell(build, hitEnv);
  const [hit, coldBeside] = pairMedians(Math.max(RUNS, 9), () => timeShell(build, hitEnv), () => timeShell(build, env), undefined, wipe);
  // One file changed since the last build (a line appended to a small file, a new one each run):
  // a miss that copies every compressed block but those around the file. A copy of the tree, so
  // the fixture stays as it is for other rows; paired with cold builds of the same edited tree.
  const edited = join(work, 'tree-edit');
  rmSync(edited, { recursive: true, force: true });
  execFileSync('cp', ['-a', tree, edited]);
  const editBuild = `${cli} build ${edited}:/app --import-path bench/edit --jobs ${jobs} > /dev/null`;
  const editEnv = { KOCACHE: join(work, 'cache-edit') };
  const editCold = { KOCACHE: join(work, 'cache-edit-cold') };
  rmSync(editEnv.KOCACHE, { recursive: true, force: true });
  timeShell(editBuild, editEnv);
  let edit = 0;
  const editOne = () => appendFileSync(join(edited, editTarget(edited)), `// edit ${edit++}\n`);
  const [incremental, coldEdited] = pairMedians(RUNS, () => timeShell(editBuild, editEnv), () => timeShell(editBuild, editCold), editOne, () => rmSync(editCold.KOCACHE, { recursive: true, force: true }));
  const sizeNote = `layer ${(result.size / 1e6).toFixed(1)} MB, gzip -6 ${(gzSize / 1e6).toFixed(1)} MB (${(((result.size - gzSize) / gzSize) * 100).toFixed(2)}%)`;
  return [
    { what: `cold layer build (level ${DEFAULT_GZIP.level}, tar+gzip into the cache)`, kocache: cold, baselineName: 'tar | gzip -6', baseline: gzip, note: sizeNote },
    { what: `cold layer build (level ${DEFAULT_GZIP.level})`, kocache: cold2, baselineName: `tar | pigz -6 -p ${jobs}`, baseline: pigz, note: 'goal <= 1.0x pigz' },
    { what: 'cold layer build, --level 6', kocache: cold6, baselineName: `tar | pigz -6 -p ${jobs}`, baseline: pigz6, note: 'like for like' },
    { what: 'cache hit, unchanged tree (incl. Node start-up)', kocache: hit, baselineName: 'kocache cold build', baseline: coldBeside, note: 'goal <= 0.1x; runs paired' },
    { what: 'one-file edit of the tree (blocks copied from the last build)', kocache: incremental, baselineName: 'kocache cold build', baseline: coldEdited, note: 'goal <= 0.25x; runs paired' },
  ];
}

/** The first small file of the bench tree (makeTree), relative to its root. */
function editTarget(tree: string): string {
  const lib = join('lib', 'pkg0', 'mod0');
  const name = execFileSync('ls', [join(tree, lib)]).toString().split('\n').find((f) => f.endsWith('.txt'));
  if (!name) throw new Error(`no file to edit under ${join(tree, lib)}`);
  return join(lib, name);
}
