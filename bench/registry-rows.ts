import { appendFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { startRegistry } from '../test/helpers/registry.js';
import { makeDockerArchive } from './archive-fixture.js';
import { makeNodeModules } from './fixtures.js';
import { medianOf, pairMedians, RUNS, timeShell, type Row } from './harness.js';

// skopeo remembers where it saw each blob (containers/image's blob-info cache) and then mounts it
// instead of uploading: its "cold" copies must start without that memory, as kocache's start
// without a cache.
const forgetSkopeoBlobs = () => {
  for (const p of ['/var/lib/containers/cache/blob-info-cache-v1.boltdb', join(homedir(), '.local/share/containers/cache/blob-info-cache-v1.boltdb')]) {
    rmSync(p, { force: true });
  }
};

/**
 * Against a real registry on loopback (Debian's docker-registry): publish of a tree as one layer,
 * cold and with every blob present, beside `skopeo copy` of the same image as an OCI layout; and
 * a push of a gzipped multi-layer docker-archive beside `gzip -dc | gzip -6` (the least work a
 * first push must do), the first push, and `skopeo copy docker-archive:`.
 */
export async function registryRows(cli: string, tree: string, work: string, archiveMb: number, archiveLayers: number, nodeModulesMb: number): Promise<Row[]> {
  const reg = await startRegistry();
  const rows: Row[] = [];
  let run = 0;
  try {
    const host = reg.host;
    const k = (args: string, cache: string) => ({ cmd: `${cli} ${args} --insecure-registry ${host} --quiet`, env: { KOCACHE: cache } });

    // publish
    const pubCache = join(work, 'cache-publish');
    const layout = join(work, 'publish-layout');
    rmSync(layout, { recursive: true, force: true });
    timeShell(`${cli} publish --base scratch --output oci:${layout} ${tree}:/app --quiet`, { KOCACHE: pubCache });
    const coldPublish = medianOf(
      RUNS,
      () => {
        const c = k(`publish --base scratch --repo ${host}/bench/publish-cold-${run++}:v1 ${tree}:/app`, join(work, 'cache-publish-cold'));
        return timeShell(c.cmd, c.env);
      },
      () => rmSync(join(work, 'cache-publish-cold'), { recursive: true, force: true }),
    );
    const warm = k(`publish --base scratch --repo ${host}/bench/publish:v1 ${tree}:/app`, pubCache);
    timeShell(warm.cmd, warm.env);
    const skopeoSame = `skopeo copy --quiet --dest-tls-verify=false oci:${layout} docker://${host}/bench/publish:v1`;
    const [noop, skopeoNoop] = pairMedians(RUNS, () => timeShell(warm.cmd, warm.env), () => timeShell(skopeoSame));
    const skopeoCold = medianOf(RUNS, () => timeShell(`skopeo copy --quiet --dest-tls-verify=false oci:${layout} docker://${host}/bench/skopeo-cold-${run++}:v1`), forgetSkopeoBlobs);
    rows.push({ what: 'publish one ~100 MB layer, empty cache and registry', kocache: coldPublish, baselineName: 'skopeo copy oci: (layer prebuilt)', baseline: skopeoCold });
    rows.push({ what: 'publish again, every blob present (no-op)', kocache: noop, baselineName: 'skopeo copy oci:, all present', baseline: skopeoNoop, note: 'goal < 0.3 s wall' });

    // One file of a node_modules changed (a dependency bumped, say), published again: the layer
    // is a miss, but its unchanged compressed blocks are copied from the last publish; paired
    // with publishing the same edited tree from an empty cache to a fresh repository.
    const nm = join(work, `node-modules-${nodeModulesMb}mb`);
    const nmMade = makeNodeModules(nm, nodeModulesMb * 1e6);
    const nmCache = join(work, 'cache-publish-nm');
    const nmCold = join(work, 'cache-publish-nm-cold');
    rmSync(nmCache, { recursive: true, force: true });
    const nmPublish = (cache: string, repo: string) => k(`publish --base scratch --repo ${host}/bench/${repo}:v1 ${nm}:/app`, cache);
    const first = nmPublish(nmCache, 'nm');
    timeShell(first.cmd, first.env);
    let nmEdit = 0;
    const [nmIncremental, nmColdTime] = pairMedians(
      RUNS,
      () => {
        const c = nmPublish(nmCache, 'nm');
        return timeShell(c.cmd, c.env);
      },
      () => {
        const c = nmPublish(nmCold, `nm-cold-${run++}`);
        return timeShell(c.cmd, c.env);
      },
      () => appendFileSync(join(nm, 'node_modules', 'pkg-1', 'lib', 'm0.js'), `// edit ${nmEdit++}\n`),
      () => rmSync(nmCold, { recursive: true, force: true }),
    );
    rows.push({
      what: `publish after a one-file edit of a node_modules (${nmMade.files} files, ${(nmMade.bytes / 1e6).toFixed(0)} MB)`,
      kocache: nmIncremental,
      baselineName: 'kocache publish, empty cache',
      baseline: nmColdTime,
      note: 'goal <= 0.25x; runs paired',
    });

    // archive push
    const archive = join(work, `archive-${archiveMb}mb-${archiveLayers}l.tar.gz`);
    await makeDockerArchive(archive, archiveMb * 1e6, archiveLayers);
    const size = statSync(archive).size;
    const pushCache = join(work, 'cache-push');
    const wipe = () => rmSync(pushCache, { recursive: true, force: true });
    const recompress = `gzip -dc ${archive} | gzip -6 > /dev/null`;
    const [firstPush, gz] = pairMedians(
      RUNS,
      () => {
        const c = k(`push ${archive} ${host}/bench/archive-${run++}:v1`, pushCache);
        return timeShell(c.cmd, c.env);
      },
      () => timeShell(recompress),
      wipe,
    );
    const again = k(`push ${archive} ${host}/bench/archive-again:v1`, pushCache);
    timeShell(again.cmd, again.env);
    const second = medianOf(RUNS, () => timeShell(again.cmd, again.env));
    // Debian's skopeo cannot read a gzipped docker-archive ("invalid tar header"), so it gets the
    // same archive inflated beforehand (not timed): the comparison favours skopeo.
    const plain = archive.replace(/\.gz$/, '');
    timeShell(`[ -f ${plain} ] || gzip -dc ${archive} > ${plain}`);
    const skopeoArchive = medianOf(RUNS, () => timeShell(`skopeo copy --quiet --dest-tls-verify=false docker-archive:${plain} docker://${host}/bench/skopeo-archive-${run++}:v1`), forgetSkopeoBlobs);
    const label = `${archiveLayers}-layer gzipped docker-archive (${(size / 1e6).toFixed(0)} MB, ${archiveMb} MB of layers)`;
    rows.push({ what: `push ${label}, first`, kocache: firstPush, baselineName: 'gzip -dc | gzip -6', baseline: gz, note: 'goal <= 1.2x' });
    rows.push({ what: 'push the same archive again', kocache: second, baselineName: 'kocache first push', baseline: firstPush, note: 'goal <= 0.1x' });
    rows.push({ what: 'push the same archive, first', kocache: firstPush, baselineName: 'skopeo copy docker-archive: (pre-inflated)', baseline: skopeoArchive });
  } finally {
    await reg.stop();
  }
  return rows;
}
