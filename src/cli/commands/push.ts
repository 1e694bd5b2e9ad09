import type { Argv, CommandModule } from 'yargs';
import { KocacheError, usageError } from '../../errors.js';
import { type Reference, formatReference, formatRepository, parseReference } from '../../reference/reference.js';
import { RegistryClient } from '../../remote/client.js';
import { type PushResult, pushImage, targetDigest } from '../../remote/push.js';
import { type LoadedArchive, loadArchive, topDescriptor } from '../../tarball/load.js';
import { archivePushable } from '../../tarball/pushable.js';
import { type Context, type GlobalArgs, type RegistryArgs, globalOptions, makeContext, registryOptions, registryTimeouts } from '../context.js';
import type { Timeouts } from '../../remote/timeouts.js';
import { formatBytes } from '../output.js';
import type { Pushable } from '../../oci/pushable.js';
import type { Digest } from '../../oci/digest.js';
import { RegistryCache } from '../../regcache/cache.js';
import { archiveRecordKey } from '../../regcache/archives.js';
import { BlobPusher } from '../../remote/blob-pusher.js';
import { type CacheRepoArgs, cacheRepoOptions, cacheReposFrom } from '../cache-repo.js';

interface PushArgs extends GlobalArgs, CacheRepoArgs, RegistryArgs {
  archive: string;
  reference: string;
  also?: string | string[] | undefined;
  'insecure-registry'?: string | string[] | undefined;
}

/** One archive and where it goes. */
interface PushJob {
  archive: string;
  target: Reference;
}

export const pushCommand: CommandModule<object, PushArgs> = {
  command: 'push <archive> <reference>',
  describe: 'Push an image archive (docker-archive, OCI archive or layout; plain or gzipped) to a registry through the cache',
  builder: (y: Argv) =>
    registryOptions(cacheRepoOptions(globalOptions(y)))
      .positional('archive', { type: 'string', demandOption: true, describe: 'docker save / Nix / skopeo / Bazel output, or an OCI layout directory' })
      .positional('reference', { type: 'string', demandOption: true, describe: 'REGISTRY/REPO[:TAG] to push to' })
      .option('also', { requiresArg: true, type: 'string', describe: 'Another ARCHIVE=REFERENCE pushed in parallel with the first (repeatable)' })
      .option('insecure-registry', { requiresArg: true, type: 'string', describe: 'HOST[:PORT] reached over plain HTTP, repeatable (loopback always is)' })
      .example('$0 push result.tar.gz ghcr.io/you/app:v1', 'inflate once, compress each layer once, upload only missing blobs')
      .example('$0 push app.tar ghcr.io/you/app:v1 --also worker.tar=ghcr.io/you/worker:v1', 'two images at once') as unknown as Argv<PushArgs>,
  handler: async (args) => {
    const jobs = [{ archive: args.archive, target: pushTarget(args.reference) }, ...many(args.also).map(parseAlso)];
    const repos = cacheReposFrom(args);
    const timeouts = registryTimeouts(args);
    const ctx = makeContext(args);
    const insecure = many(args['insecure-registry']);
    const registryCache = repos && new RegistryCache({ repos, cache: ctx.cache, warn: (m) => ctx.out.warn(m), jobs: ctx.jobs, insecureRegistries: insecure });
    const results = await pushArchives(ctx, jobs, insecure, registryCache, timeouts);
    const rows = results.map((r, i) => ({ archive: jobs[i]!.archive, ...r }));
    ctx.out.result(rows.length === 1 ? rows[0] : rows, rows.map((r) => r.reference).join('\n'));
    // Records still being written are waited for once the images are out (failures were warnings).
    await registryCache?.close();
  },
};

/** A repeatable string option: absent, once, or several times. Options are not greedy arrays, so they never swallow the positionals. */
function many(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(String);
}

/** A push target names a tag (default latest); a digest is what the push produces, not an input. */
export function pushTarget(s: string): Reference {
  const ref = parseReference(s);
  if (ref.digest !== undefined) throw usageError(`push to a tag, not a digest: ${s} (the digest is printed after the push)`);
  return ref;
}

function parseAlso(s: string): PushJob {
  // Split at the last '=': a path may hold one, a reference never does.
  const eq = s.lastIndexOf('=');
  if (eq <= 0 || eq === s.length - 1) throw usageError(`--also wants ARCHIVE=REFERENCE, not ${JSON.stringify(s)}`);
  return { archive: s.slice(0, eq), target: pushTarget(s.slice(eq + 1)) };
}

/**
 * Imports (or recognises) each archive and pushes it; several archives run side by side through
 * one registry client. The first failure is reported after the others settle.
 */
export async function pushArchives(ctx: Context, jobs: PushJob[], insecureRegistries: string[], registryCache?: RegistryCache, timeouts: Partial<Timeouts> = {}): Promise<PushResult[]> {
  const client = new RegistryClient({ insecureRegistries, jobs: ctx.jobs, warn: (m) => ctx.out.warn(m), cache: ctx.cache, timeouts });
  try {
    const settled = await Promise.allSettled(jobs.map((job) => pushOne(ctx, client, job, jobs.length > 1, registryCache)));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    return settled.map((s) => (s as PromiseFulfilledResult<PushResult>).value);
  } finally {
    await client.close();
  }
}

async function pushOne(ctx: Context, client: RegistryClient, job: PushJob, several: boolean, rc: RegistryCache | undefined): Promise<PushResult> {
  const label = several ? `${job.archive}: ` : '';
  const repo: Reference = { registry: job.target.registry, repository: job.target.repository };
  const pusher = new BlobPusher(client, repo, ctx.jobs);
  // A registry cache that knows this archive (by its sha256) answers with the image: its blobs are
  // mounted or copied into the target while it is looked up, and its manifests come in the record.
  const remote = rc && !rc.check ? (async (key: string) => (await rc.findArchive(archiveRecordKey(key), {
    kind: 'registry', repo, settle: (d, o) => pusher.settle(d, o),
  }))?.record.image) : undefined;
  const [loaded, current] = await Promise.all([
    loadArchive(job.archive, {
      cache: ctx.cache, gzip: ctx.gzip, jobs: ctx.jobs, warn: (m) => ctx.out.warn(m), remote,
      onRead: (read, total) => ctx.out.progress(() => `${label}reading ${job.archive}: ${formatBytes(read)} of ${formatBytes(total)}`),
    }),
    targetDigest(client, job.target),
  ]);
  if (rc?.check) await checkArchive(rc, loaded);
  const image = await archivePushable(ctx.cache, loaded.image);
  const pushed = pushImage(client, job.target, image, {
    jobs: ctx.jobs,
    current,
    pusher,
    onProgress: ({ done, total }) => ctx.out.progress(() => `${label}pushing ${formatReference(job.target)}: ${done}/${total}`),
  });
  if (rc) rc.offerArchive(archiveRecordKey(loaded.key), loaded.image, manifestBytes(image), { target: repo, ready: pushed });
  return pushed;
}

/** The exact bytes of the image's index and manifests, for the archive record. */
function manifestBytes(image: Pushable): Map<Digest, Buffer> {
  const out = new Map<Digest, Buffer>();
  out.set(image.descriptor.digest, image.bytes);
  if (image.kind === 'index') for (const m of image.manifests) out.set(m.descriptor.digest, m.bytes);
  return out;
}

/** --cache-check: the archive was imported here; a registry cache recording another image for it is wrong. */
async function checkArchive(rc: RegistryCache, loaded: LoadedArchive): Promise<void> {
  const far = await rc.findArchive(archiveRecordKey(loaded.key), { kind: 'none' });
  if (!far) return;
  const want = topDescriptor(loaded.image).digest;
  const got = topDescriptor(far.record.image).digest;
  if (got !== want) {
    throw new KocacheError('cache-check', `--cache-check: the registry cache ${formatRepository(far.repo)} records ${got} for ${loaded.path}, but it imports as ${want}: the cache repository holds a wrong record; stop writing to it from untrusted builds and delete it`);
  }
}
