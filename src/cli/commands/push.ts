import type { Argv, CommandModule } from 'yargs';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KocacheError, usageError } from '../../errors.js';
import { parseImageSource } from '../../image/transport.js';
import { needsTag, parseLayoutIndex, selectLayoutEntry } from '../../oci/refname.js';
import { readLayoutIndex } from '../../tarball/layout.js';
import { type Reference, formatReference, formatRepository, parseReference } from '../../reference/reference.js';
import { RegistryClient } from '../../remote/client.js';
import { type PushResult, pushImage, targetDigest } from '../../remote/push.js';
import { type LoadedArchive, loadArchive, topDescriptor } from '../../tarball/load.js';
import { archivePushable } from '../../tarball/pushable.js';
import { type Context, type GlobalArgs, type RegistryArgs, globalOptions, makeContext, registryOptions, registryTimeouts } from '../context.js';
import { formatBytes } from '../output.js';
import type { Pushable } from '../../oci/pushable.js';
import type { Digest } from '../../oci/digest.js';
import { RegistryCache } from '../../regcache/cache.js';
import { archiveRecordKey } from '../../regcache/archives.js';
import { BlobPusher } from '../../remote/blob-pusher.js';
import { type CacheRepoArgs, cacheRepoOptions, cacheReposFrom } from '../cache-repo.js';
import { checkResultFile, writeResultFile } from '../publish-options.js';
import { Progress } from '../progress.js';

interface PushArgs extends GlobalArgs, CacheRepoArgs, RegistryArgs {
  archive: string;
  reference: string;
  also?: string | string[] | undefined;
  'insecure-registry'?: string | string[] | undefined;
  'image-refs'?: string | undefined;
  'digest-file'?: string | undefined;
}

/** One archive and where it goes. */
interface PushJob {
  /** As given (for messages and --json). */
  archive: string;
  /** The file or folder, and the layout entry to take (oci:DIR:TAG). */
  path: string;
  tag?: string | undefined;
  target: Reference;
}

export const pushCommand: CommandModule<object, PushArgs> = {
  command: 'push <archive> <reference>',
  describe: 'Push an image archive (docker-archive, OCI archive or layout; plain or gzipped) to a registry through the cache',
  builder: (y: Argv) =>
    registryOptions(cacheRepoOptions(globalOptions(y)))
      .option('image-refs', { type: 'string', requiresArg: true, describe: 'Write each pushed REGISTRY/REPO@sha256:... to this file, one a line' })
      .option('digest-file', { type: 'string', requiresArg: true, describe: 'Write each pushed sha256:... digest to this file, one a line' })
      .positional('archive', { type: 'string', demandOption: true, describe: 'docker save / Nix / skopeo / Bazel output, OCI layout or archive; oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE' })
      .positional('reference', { type: 'string', demandOption: true, describe: 'REGISTRY/REPO[:TAG] to push to' })
      .option('also', { requiresArg: true, type: 'string', describe: 'Another ARCHIVE=REFERENCE pushed in parallel with the first (repeatable)' })
      .option('insecure-registry', { requiresArg: true, type: 'string', describe: 'HOST[:PORT] reached over plain HTTP, repeatable (loopback always is)' })
      .example('$0 push result.tar.gz ghcr.io/you/app:v1', 'inflate once, compress each layer once, upload only missing blobs')
      .example('$0 push app.tar ghcr.io/you/app:v1 --also worker.tar=ghcr.io/you/worker:v1', 'two images at once') as unknown as Argv<PushArgs>,
  handler: async (args) => {
    const jobs = [pushJob(args.archive, pushTarget(args.reference)), ...many(args.also).map(parseAlso)];
    if (args['image-refs'] !== undefined) checkResultFile(String(args['image-refs']), '--image-refs file');
    if (args['digest-file'] !== undefined) checkResultFile(String(args['digest-file']), '--digest-file');
    const repos = cacheReposFrom(args);
    const timeouts = registryTimeouts(args);
    const ctx = makeContext(args);
    const insecure = many(args['insecure-registry']);
    const client = new RegistryClient({ insecureRegistries: insecure, jobs: ctx.jobs, warn: (m) => ctx.out.warn(m), cache: ctx.cache, timeouts });
    // One token per registry for the whole command (RegistryClient.expect), the cache's included.
    client.expect({ push: [...jobs.map((j) => j.target), ...(repos?.write ?? [])], pull: repos?.read ?? [] });
    const registryCache = repos && new RegistryCache({ repos, cache: ctx.cache, warn: (m) => ctx.out.warn(m), jobs: ctx.jobs, via: client });
    let results: PushResult[];
    try {
      results = await pushArchives(ctx, jobs, client, registryCache);
    } catch (err) {
      // The records under way are not waited for; the connections they share close after them.
      if (registryCache) registryCache.abandon(() => client.close());
      else await client.close();
      throw err;
    }
    // One shape however many archives (docs/cli-json.md): the images, then the totals.
    const images = results.map((r, i) => ({
      archive: jobs[i]!.archive, reference: r.reference, digest: r.digest, tag: jobs[i]!.target.tag ?? null,
      uploaded: r.uploaded, mounted: r.mounted, present: r.present, bytesUploaded: r.bytesUploaded,
    }));
    const sum = (k: 'uploaded' | 'mounted' | 'present' | 'bytesUploaded') => images.reduce((n, i) => n + i[k], 0);
    const result = { images, uploaded: sum('uploaded'), mounted: sum('mounted'), present: sum('present'), bytesUploaded: sum('bytesUploaded') };
    if (args['image-refs'] !== undefined) writeResultFile(String(args['image-refs']), images.map((i) => `${i.reference}\n`).join(''), '--image-refs file');
    if (args['digest-file'] !== undefined) writeResultFile(String(args['digest-file']), images.map((i) => i.digest).join('\n'), '--digest-file');
    const what = images.length === 1 ? formatReference(jobs[0]!.target) : `${images.length} images`;
    ctx.out.info(`pushed ${what}: blobs ${result.uploaded} uploaded (${formatBytes(result.bytesUploaded)}), ${result.mounted} mounted, ${result.present} already present`);
    ctx.out.result(result, images.map((r) => r.reference).join('\n'));
    // Records still being written are waited for once the images are out (failures were warnings).
    await registryCache?.close();
    await client.close();
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
  return pushJob(s.slice(0, eq), pushTarget(s.slice(eq + 1)));
}

/**
 * An archive argument in skopeo's transport names (oci:DIR[:TAG], oci-archive:FILE[:TAG],
 * docker-archive:FILE) or a bare path. A layout folder's choice of image is checked now, before
 * any work: a layout holding several named images needs :TAG, and the error lists the tags.
 */
function pushJob(archive: string, target: Reference): PushJob {
  const source = parseImageSource(archive);
  if (source.kind === 'registry') {
    throw new KocacheError('fs', `${archive} is not an archive or layout on disk (no such file): push takes docker-archive, OCI archive or layout paths`);
  }
  if (source.kind === 'layout' || (existsSync(join(source.path, 'oci-layout')) && source.format === undefined)) {
    if (existsSync(join(source.path, 'index.json'))) {
      const index = parseLayoutIndex(readLayoutIndex(source.path), source.path);
      if (source.tag !== undefined || needsTag(index)) selectLayoutEntry(index, source.tag, `oci:${source.path}`);
    }
  }
  return { archive, path: source.path, tag: source.tag, target };
}

/**
 * Imports (or recognises) each archive and pushes it; several archives run side by side through
 * one registry client. The first failure is reported after the others settle.
 */
export async function pushArchives(ctx: Context, jobs: PushJob[], client: RegistryClient, registryCache?: RegistryCache): Promise<PushResult[]> {
  const progress = new Progress(ctx.out);
  progress.phase(jobs.length > 1 ? `reading ${jobs.length} archives` : `reading ${jobs[0]!.archive}`);
  let settled: PromiseSettledResult<PushResult>[];
  try {
    settled = await Promise.allSettled(jobs.map((job) => pushOne(ctx, client, job, progress, registryCache)));
  } finally {
    progress.stop();
  }
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<PushResult>).value);
}

async function pushOne(ctx: Context, client: RegistryClient, job: PushJob, progress: Progress, rc: RegistryCache | undefined): Promise<PushResult> {
  let last = 0;
  const repo: Reference = { registry: job.target.registry, repository: job.target.repository };
  const pusher = new BlobPusher(client, repo, ctx.jobs);
  // A registry cache that knows this archive (by its sha256) answers with the image: its blobs are
  // mounted or copied into the target while it is looked up, and its manifests come in the record.
  const remote = rc && !rc.check ? (async (key: string) => (await rc.findArchive(archiveRecordKey(key), {
    kind: 'registry', repo, settle: (d, o) => pusher.settle(d, o),
  }))?.record.image) : undefined;
  const [loaded, current] = await Promise.all([
    loadArchive(job.path, {
      cache: ctx.cache, gzip: ctx.gzip, jobs: ctx.jobs, warn: (m) => ctx.out.warn(m), remote, tag: job.tag,
      onRead: (read, total) => {
        progress.bytesRead(read - last, total);
        last = read;
        // Reading ends before the last layers are compressed: say so, or the count looks stuck.
        if (read === total) progress.phase('compressing layers');
      },
      onCompress: (e) => progress.layerCompressing(e),
    }),
    targetDigest(client, job.target),
  ]);
  if (rc?.check) await checkArchive(rc, loaded);
  const image = await archivePushable(ctx.cache, loaded.image);
  progress.phase(`pushing to ${formatReference(job.target)}`);
  const pushed = pushImage(client, job.target, progress.countingImage(image), { jobs: ctx.jobs, current, pusher });
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
