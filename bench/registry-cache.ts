import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startRegistry } from '../test/helpers/registry.js';
import { pairMedians, RUNS, timeShell, type Row } from './harness.js';

/**
 * A fresh CI runner (empty KOCACHE) publishing a tree to a new repository of a registry on
 * loopback: cold (no registry cache) beside the same with the registry cache holding the records
 * (paired runs), a local hit (the runner's own cache already has the layer), and the cost of
 * writing the records during a cold publish (cold with --cache-repo to an empty cache repository,
 * beside cold without). The requests of one registry-cache publish are counted in the access log.
 */
export async function registryCacheRows(cli: string, trees: { name: string; path: string }[], work: string): Promise<Row[]> {
  const reg = await startRegistry();
  const rows: Row[] = [];
  let run = 0;
  try {
    const host = reg.host;
    for (const tree of trees) {
      const fresh = () => {
        const dir = join(work, `regcache-runner-${run++}`);
        rmSync(dir, { recursive: true, force: true });
        return dir;
      };
      const pub = (repo: string, extra = '') => `${cli} publish --base scratch --import-path bench/${tree.name} --repo ${host}/${repo}:v1 ${tree.path}:/app --quiet ${extra}`;
      const cacheRepo = `${host}/bench/${tree.name}-cache`;
      // Runner A fills the registry cache.
      timeShell(pub(`bench/${tree.name}-seed`, `--cache-repo ${cacheRepo}`), { KOCACHE: fresh() });

      const [cold, withCache] = pairMedians(
        RUNS,
        () => timeShell(pub(`bench/${tree.name}-cold-${run}`), { KOCACHE: fresh() }),
        () => timeShell(pub(`bench/${tree.name}-rc-${run}`, `--cache-from ${cacheRepo}`), { KOCACHE: fresh() }),
      );
      // One more registry-cache publish, its requests counted.
      const before = reg.log().length;
      const countRepo = `bench/${tree.name}-count`;
      const env = { KOCACHE: fresh(), KOCACHE_TRACE: '1' };
      timeShell(`${pub(countRepo, `--cache-from ${cacheRepo}`)} 2> ${join(work, 'regcache-trace.txt')}`, env);
      const requests = reg.log().slice(before).split('\n').filter((l) => /HTTP\/[0-9.]+" \d/.test(l)).length;
      const trace = readFileSync(join(work, 'regcache-trace.txt'), 'utf8');
      const gz = /"gzip\.in":(\d+)/.exec(trace)?.[1] ?? '0';
      const tar = /"tar\.out":(\d+)/.exec(trace)?.[1] ?? '0';

      const hitCache = fresh();
      timeShell(pub(`bench/${tree.name}-hit-seed`), { KOCACHE: hitCache });
      const [hit, cold2] = pairMedians(
        RUNS,
        () => timeShell(pub(`bench/${tree.name}-hit-${run++}`), { KOCACHE: hitCache }),
        () => timeShell(pub(`bench/${tree.name}-cold2-${run}`), { KOCACHE: fresh() }),
      );
      const [exporting, cold3] = pairMedians(
        RUNS,
        () => timeShell(pub(`bench/${tree.name}-export-${run}`, `--cache-repo ${host}/bench/${tree.name}-export-cache-${run}`), { KOCACHE: fresh() }),
        () => timeShell(pub(`bench/${tree.name}-cold3-${run}`), { KOCACHE: fresh() }),
      );
      rows.push(
        { what: `fresh runner publishes ${tree.name}, registry cache (--cache-from)`, kocache: withCache, baselineName: 'cold publish, no cache', baseline: cold, note: `goal <= 0.15x; tar ${tar} B, gzip ${gz} B; ${requests} requests in all (1 layer)` },
        { what: `runner publishes ${tree.name} to a new repository, local cache hit`, kocache: hit, baselineName: 'cold publish, no cache', baseline: cold2 },
        { what: `cold publish of ${tree.name} writing the registry cache (--cache-repo)`, kocache: exporting, baselineName: 'cold publish, no cache', baseline: cold3, note: 'goal <= 1.1x' },
      );
    }
  } finally {
    await reg.stop();
  }
  return rows;
}
