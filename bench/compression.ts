import { readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync as zlibGunzip, gzipSync as zlibGzip } from 'node:zlib';
import { gunzipSync as fflateGunzip, gzipSync as fflateGzip } from 'fflate';
import { gzipStream } from '../src/compress/gzip.js';
import { hashFileSync } from '../src/layer/filehash.js';
import { median, pairMedians, RUNS, timeShell, type Row } from './harness.js';

function timeIt(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

async function timeAsync(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

const mbps = (bytes: number, s: number) => `${(bytes / s / 1e6).toFixed(0)} MB/s`;

/**
 * fflate against node:zlib on the same tar, in process, at the level kocache uses: the reason
 * the layer path uses node:zlib (see docs/compression.md). Also kocache's block-parallel gzip against
 * single-threaded zlib.
 */
export async function compressionRows(tarPath: string, jobs: number): Promise<Row[]> {
  const rows: Row[] = [];
  // The same primitives kocache uses beside the command-line tools: sha256 (digests, diffids,
  // archive identity) and gunzip (archive import), each reading the file itself.
  const [sha, sum] = pairMedians(RUNS, () => timeIt(() => hashFileSync(tarPath)), () => timeShell(`sha256sum ${tarPath} > /dev/null`));
  const size = readFileSync(tarPath).length;
  rows.push({ what: `sha256 of the ${(size / 1e6).toFixed(0)} MB tar: node:crypto, 1 MiB reads`, kocache: sha, baselineName: 'sha256sum', baseline: sum, note: mbps(size, sha) });
  const gzPath = `${tarPath}.gz`;
  writeFileSync(gzPath, zlibGzip(readFileSync(tarPath), { level: 6 }));
  const [inf, gzd] = pairMedians(RUNS, () => timeIt(() => zlibGunzip(readFileSync(gzPath))), () => timeShell(`gzip -dc ${gzPath} > /dev/null`));
  rows.push({ what: 'gunzip of the same tar, gzipped: node:zlib', kocache: inf, baselineName: 'gzip -dc', baseline: gzd, note: mbps(size, inf) });

  const data = readFileSync(tarPath);
  const gz = zlibGzip(data, { level: 6 });
  const z6 = median(Array.from({ length: RUNS }, () => timeIt(() => zlibGzip(data, { level: 6 }))));
  const f6 = median(Array.from({ length: RUNS }, () => timeIt(() => fflateGzip(data, { level: 6 }))));
  rows.push({ what: `gzip -6 in process, ${(data.length / 1e6).toFixed(0)} MB tar: node:zlib (fflate as baseline)`, kocache: z6, baselineName: 'fflate 0.8', baseline: f6, note: `${mbps(data.length, z6)} vs ${mbps(data.length, f6)}` });
  const zg = median(Array.from({ length: RUNS }, () => timeIt(() => zlibGunzip(gz))));
  const fg = median(Array.from({ length: RUNS }, () => timeIt(() => fflateGunzip(gz))));
  rows.push({ what: 'gunzip in process: node:zlib (fflate as baseline)', kocache: zg, baselineName: 'fflate 0.8', baseline: fg, note: `${mbps(data.length, zg)} vs ${mbps(data.length, fg)}` });
  const parTimes: number[] = [];
  let parSize = 0;
  for (let i = 0; i < RUNS; i++) {
    parTimes.push(
      await timeAsync(async () => {
        parSize = 0;
        for await (const c of gzipStream([data], { level: 6, jobs })) parSize += c.length;
      }),
    );
  }
  const par = median(parTimes);
  // Not the same work: kocache stores the chunks that look incompressible (docs/compression.md).
  const sizes = `${(parSize / 1e6).toFixed(2)} MB vs ${(gz.length / 1e6).toFixed(2)} MB`;
  rows.push({ what: `kocache block-parallel gzip -6, ${jobs} jobs (single-thread zlib as baseline)`, kocache: par, baselineName: 'zlib.gzipSync', baseline: z6, note: `${mbps(data.length, par)}; ${sizes}` });
  return rows;
}
