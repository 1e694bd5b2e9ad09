import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startRegistry } from '../test/helpers/registry.js';
import { pairMedians, RUNS, timeShell, type Row } from './harness.js';

/**
 * Work done once whatever the platforms or the repository (issue 14), against a real registry on
 * loopback, each run from an empty cache and into new repositories:
 * - the tree (one layer, the same files for every platform) published for linux/amd64 and
 *   linux/arm64 beside the same publish for linux/amd64 alone;
 * - a publish to a second repository right after the first, beside that first publish.
 */
export async function sameInputRows(cli: string, tree: string, work: string): Promise<Row[]> {
  const reg = await startRegistry();
  let run = 0;
  try {
    const host = reg.host;
    const cache = join(work, 'cache-same-inputs');
    const wipe = () => rmSync(cache, { recursive: true, force: true });
    const publish = (repo: string, platforms: string[]) =>
      timeShell(`${cli} publish --base scratch --repo ${host}/bench/${repo}:v1 ${tree}:/app ${platforms.map((p) => `--platform ${p}`).join(' ')} --quiet`, { KOCACHE: cache });

    const [two, one] = pairMedians(
      RUNS,
      () => publish(`two-platforms-${run++}`, ['linux/amd64', 'linux/arm64']),
      () => publish(`one-platform-${run++}`, ['linux/amd64']),
      wipe,
      wipe,
    );
    // Each pair: a cold publish to one repository, then the same inputs to another.
    const [first, second] = pairMedians(
      RUNS,
      () => publish(`first-repo-${run++}`, ['linux/amd64']),
      () => publish(`second-repo-${run++}`, ['linux/amd64']),
      wipe,
    );
    return [
      { what: 'publish the tree for 2 platforms (a layer the same for both), cold', kocache: two, baselineName: 'the same for 1 platform', baseline: one, note: 'goal <= 1.1x' },
      { what: 'publish the same inputs to a second repository', kocache: second, baselineName: 'the first publish (cold)', baseline: first, note: 'goal <= 0.1x' },
    ];
  } finally {
    await reg.stop();
  }
}
