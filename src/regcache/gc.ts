import { KocacheError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { type Reference, formatRepository } from '../reference/reference.js';
import type { RegistryClient } from '../remote/client.js';
import { RetryableError } from '../remote/retry.js';
import { runBounded } from '../util/limit.js';
import { MAX_ARCHIVE_RECORD_BYTES, isRecordTag, recordCreated } from './record.js';

export interface RemoteGcOptions {
  /** Records written (or refreshed by a writer) longer ago than this are removed. */
  maxAgeMs: number;
  dryRun?: boolean;
  jobs?: number;
  now?: number;
}

export interface RemoteGcEntry {
  tag: string;
  digest: Digest;
  kind: string;
  created: string;
}

/** What `kocache gc --cache-repo R --json` prints. */
export interface RemoteGcReport {
  repository: string;
  dryRun: boolean;
  /** Tags that look like records (kc1-<hash>) found in the repository. */
  records: number;
  /** Records past --max-age: deleted, or to be deleted with --dry-run. */
  expired: RemoteGcEntry[];
  deleted: number;
  /** The registry refuses deletes (distribution without storage.delete.enabled). */
  deletesDisabled: boolean;
  /** Record tags whose manifest could not be read or is not a kocache record: left alone. */
  skipped: number;
}

const DAY_MS = 86_400_000;

/**
 * Prunes a registry cache: reads every record's created day (one GET of a few KB each) and deletes
 * the manifests of those older than maxAge, by digest, which removes their tags. The blobs they
 * pinned stay until the registry's own garbage collection, which frees those no other manifest
 * (an image, a newer record) references. App images are never touched: only record tags are read.
 */
export async function collectRegistryGarbage(client: RegistryClient, repo: Reference, o: RemoteGcOptions): Promise<RemoteGcReport> {
  const now = o.now ?? Date.now();
  const tags = (await client.listTags(repo)).filter(isRecordTag).sort();
  const expired: RemoteGcEntry[] = [];
  let skipped = 0;
  await runBounded(tags, o.jobs ?? 8, async (tag) => {
    let got: { descriptor: { digest: Digest }; bytes: Buffer };
    try {
      got = await client.getManifest({ ...repo, tag }, MAX_ARCHIVE_RECORD_BYTES);
    } catch (err) {
      // A registry that fails (down, refusing, 5xx after its tries) fails gc: a broken registry
      // must not look like a gc with nothing to delete. A tag gone meanwhile or foreign is left.
      if (registryFailed(err)) throw err;
      skipped++;
      return;
    }
    const info = recordCreated(got.bytes);
    if (!info || info.created === 0) {
      skipped++;
      return;
    }
    // A record carries only the day it was written (record.ts): it may have been written as late
    // as that day's end, so its age counts from there and no record younger than maxAge goes
    // (with --max-age 0s, every record).
    if (Math.max(0, now - (info.created + DAY_MS)) >= o.maxAgeMs) {
      expired.push({ tag, digest: got.descriptor.digest, kind: info.kind, created: new Date(info.created).toISOString() });
    }
  });
  expired.sort((a, b) => (a.tag < b.tag ? -1 : 1));
  const report: RemoteGcReport = { repository: formatRepository(repo), dryRun: Boolean(o.dryRun), records: tags.length, expired, deleted: 0, deletesDisabled: false, skipped };
  if (o.dryRun) return report;
  for (const e of expired) {
    const r = await client.deleteManifest(repo, e.digest);
    if (r === 'unsupported') {
      report.deletesDisabled = true;
      break;
    }
    if (r === 'deleted') report.deleted++;
  }
  return report;
}

function registryFailed(err: unknown): boolean {
  if (!(err instanceof KocacheError)) return true;
  if (['unreachable', 'auth', 'credentials', 'tls'].includes(err.code)) return true;
  return err.code === 'registry' && err.cause instanceof RetryableError;
}
