import { hasBuilt, markBuilt } from '../cache/built.js';
import type { CacheStore } from '../cache/store.js';
import { KocacheError } from '../errors.js';
import type { BlobSource } from '../oci/pushable.js';
import { type Descriptor, isDescriptor } from '../oci/descriptor.js';
import { type Digest, digestHex, isDigest } from '../oci/digest.js';
import { MediaType } from '../oci/mediatypes.js';
import { type Reference, canonicalRegistry, formatRepository } from '../reference/reference.js';
import type { RegistryClient } from '../remote/client.js';
import type { Timeouts } from '../remote/timeouts.js';
import type { ArchiveImage } from '../tarball/plan.js';
import { unpackLayer } from '../tarball/inflate.js';
import { tee } from '../tarball/tee.js';
import { Limiter } from '../util/limit.js';
import { traceAdd } from '../util/trace.js';
import { type Mismatch, describeMismatch, verify } from '../util/verify.js';
import {
  type ArchiveRecord, type LayerRecord, BrokenRecord, MAX_ARCHIVE_RECORD_BYTES, MAX_LAYER_RECORD_BYTES, RECORD_CONFIG,
  RECORD_CONFIG_BYTES, archivePins, archiveRecordManifest, layerRecordManifest, parseArchiveRecord, parseLayerRecord,
  Withdrawn, recordDay, recordTag,
} from './record.js';

/** Tells a registry target's push where a blob now is. */
function settleIn(target: Target, digest: Digest, outcome: Outcome | undefined): void {
  if (target.kind === 'registry' && outcome) target.settle?.(digest, outcome);
}

/** Which registry repositories hold records: read in order, written to all. */
export interface CacheRepos {
  /** --cache-repo, then each --cache-from, in the order given. */
  read: Reference[];
  /** --cache-repo and --cache-to. */
  write: Reference[];
  /** --cache-check: what the registry cache answers is rebuilt and compared, never trusted. */
  check: boolean;
}

/**
 * Where a record's blobs must be once it answers:
 * - registry: in the repository being pushed to (present, mounted from the cache repository on
 *   the same registry, or copied from another registry), never downloaded to learn a digest;
 *   `settle` tells the image push the outcome so it does not ask again; given one, a layer is
 *   answered before its blob is checked, and the outcome it gets is that check (findLayer);
 * - local: in the local content store (the output is a file, or `kocache build`);
 * - none: anywhere in the cache repository (`kocache warm`: records only).
 */
export type Target =
  | { kind: 'registry'; repo: Reference; settle?: (digest: Digest, outcome: Outcome | Promise<Outcome>) => void }
  | { kind: 'local' }
  | { kind: 'none' };

export interface RegistryCacheOptions {
  repos: CacheRepos;
  cache: CacheStore;
  warn: (message: string) => void;
  jobs: number;
  insecureRegistries?: string[];
  dockerConfigDir?: string;
  /** The command's registry timeouts (--connect-timeout etc.), as its other registry clients get. */
  timeouts?: Partial<Timeouts>;
  /** A client of its own, or one given (tests); by default made on first use, with few retries. */
  client?: RegistryClient;
  /**
   * The command's own client: the cache's is then made from it (RegistryClient.share), over the
   * same connections and tokens, with the cache's own retries.
   */
  via?: RegistryClient;
  /** The clock, for tests of gc (records carry the UTC day they were written). */
  now?: () => number;
}

/** How a record's blob came to be in a registry target. */
type Outcome = 'present' | 'mounted' | 'uploaded';

/** Where a layer or archive found in the registry cache came from, for exporting it elsewhere. */
export interface Found<R> {
  record: R;
  repo: Reference;
  /** A layer answered before its blob was checked: that check (it rejects with Withdrawn). */
  confirmed?: Promise<unknown>;
}

/** Local memo of a record known to exist in a repository: `regcache/<registry>/<repo>/<tag>`. */
interface Memo {
  created: string;
  layer?: { descriptor: Descriptor; diffid: Digest };
}

/** A memo as read back from the local index (input like any other: a damaged one is a miss). */
function isMemo(m: unknown): m is Memo {
  if (typeof m !== 'object' || m === null || typeof (m as Memo).created !== 'string') return false;
  const layer = (m as Memo).layer as { descriptor?: unknown; diffid?: unknown } | undefined;
  return layer === undefined || (typeof layer === 'object' && layer !== null && isDescriptor(layer.descriptor) && typeof layer.diffid === 'string' && isDigest(layer.diffid));
}

/**
 * The registry cache: records (src/regcache/record.ts) in OCI repositories, read after the local
 * cache misses and written after a build. Nothing here can fail a command: an unreachable or
 * refusing repository, a broken record, a blob gone missing, each is one warning and a miss; a
 * failed write is one warning. A repository that failed as a whole is not asked again this run.
 */
export class RegistryCache {
  private clientP: Promise<RegistryClient> | undefined;
  /** Repositories that failed as a whole this run (warned once): neither read nor written again. */
  private readonly down = new Set<string>();
  private readonly pending: Promise<void>[] = [];
  /** Memos of records found, written when the command closes the cache (see findLayer). */
  private readonly memos: (() => Promise<void>)[] = [];
  private readonly configs = new Map<string, Promise<unknown>>();
  private readonly transfers: Limiter;
  private readonly now: () => number;
  private readonly warned = new Set<string>();
  /** Layers answered before their blob was checked (by repository and tag): that check. */
  private readonly checking = new Map<string, Promise<unknown>>();
  /** Records found broken this run (`repo:tag`): a writer replaces them. */
  private readonly broken = new Set<string>();
  /** The command failed (abandon): what the records under way meet is not reported. */
  private abandoned = false;

  constructor(private readonly o: RegistryCacheOptions) {
    this.transfers = new Limiter(Math.max(1, o.jobs));
    this.now = o.now ?? Date.now;
    if (o.client) this.clientP = Promise.resolve(o.client);
  }

  get repos(): CacheRepos {
    return this.o.repos;
  }

  get check(): boolean {
    return this.o.repos.check;
  }

  /** The registry client, loaded on first use: a local hit already exported today needs none. */
  client(): Promise<RegistryClient> {
    // Short waits (a cache that does not answer soon is a miss), but four tries: the distribution
    // registry answers 500 now and then while many writers put records in one repository.
    const retry = { tries: 4, baseDelayMs: 100, maxDelayMs: 500, maxRetryAfterMs: 1000 };
    if (this.o.via) return (this.clientP ??= Promise.resolve(this.o.via.share({ jobs: this.o.jobs, retry })));
    return (this.clientP ??= import('../remote/client.js').then(({ RegistryClient }) => {
      const client = new RegistryClient({
        ...(this.o.insecureRegistries ? { insecureRegistries: this.o.insecureRegistries } : {}),
        ...(this.o.dockerConfigDir ? { dockerConfigDir: this.o.dockerConfigDir } : {}),
        ...(this.o.timeouts ? { timeouts: this.o.timeouts } : {}),
        jobs: this.o.jobs,
        cache: this.o.cache,
        retry,
      });
      // One token per registry for every cache repository this run reads or writes.
      client.expect({ push: this.o.repos.write, pull: this.o.repos.read });
      return client;
    }));
  }

  async close(): Promise<void> {
    await this.flush();
    if (this.clientP) await (await this.clientP).close();
  }

  /**
   * After a failed command: the records under way finish (or fail, warned) on their own, and
   * `then` runs once they have (closing the connections they share). Not waited for.
   */
  abandon(then: () => unknown): void {
    this.abandoned = true;
    void this.close().catch(() => undefined).finally(then);
  }

  /** Writes the memos, then waits for every record write started so far (they never throw: failures were warned). */
  async flush(): Promise<void> {
    this.pending.push(...this.memos.splice(0).map((write) => write()));
    while (this.pending.length) await Promise.all(this.pending.splice(0));
  }

  // ---- layers ---------------------------------------------------------------------------------

  /**
   * The layer recorded under `key` in the first repository that has a usable record, its blob
   * made available to `target`; undefined on a miss (broken records and repositories warned).
   */
  async findLayer(key: string, mediaType: string, target: Target): Promise<Found<LayerRecord> | undefined> {
    const tag = recordTag(key);
    for (const repo of this.readable()) {
      // Kept from an earlier run: no GET. A memo whose blob is gone (the record was pruned since)
      // is dropped without a warning and the registry asked again.
      const memo = await this.memo(repo, tag);
      if (memo?.layer) {
        const record: LayerRecord = { key, descriptor: memo.layer.descriptor, diffid: memo.layer.diffid, created: memo.created };
        if (await this.materialize(record.descriptor, repo, target, record.diffid).then((o) => (settleIn(target, record.descriptor.digest, o), true), () => false)) {
          traceAdd('regcache.hit', 1);
          return { record, repo };
        }
        await this.forget(repo, tag);
      }
      const once = recordName(repo, tag);
      // An answer given ahead earlier this run: asked again once its check is over (if it passed).
      if (await this.checking.get(once)?.then(() => false, () => true)) continue;
      const bytes = await this.getRecord(repo, tag, MAX_LAYER_RECORD_BYTES);
      if (!bytes) continue;
      let record: LayerRecord;
      let confirmed: Promise<unknown> | undefined;
      try {
        record = parseLayerRecord(bytes, key, mediaType);
        if (target.kind === 'registry' && target.settle) {
          // Answered now: the image is made and its config pushed while the blob is checked and
          // mounted, and the layer's push is that check. One that fails withdraws the answer.
          const checked = this.materialize(record.descriptor, repo, target).then((o) => o ?? 'present', (err: unknown) => {
            this.brokenRecord(repo, tag, err);
            traceAdd('regcache.withdrawn', 1);
            throw new Withdrawn(`the registry cache's record ${once} proved unusable`);
          });
          target.settle(record.descriptor.digest, checked);
          this.checking.set(once, checked);
          confirmed = checked;
        } else {
          await this.materialize(record.descriptor, repo, target, record.diffid);
        }
      } catch (err) {
        this.brokenRecord(repo, tag, err);
        continue;
      }
      // Written when the command closes the cache, once its image is out: the memo needs the
      // local index (loading cacache, on a fresh runner), which would hold up the image's push here.
      const keep = () => this.remember(repo, tag, { created: record.created, layer: { descriptor: record.descriptor, diffid: record.diffid } });
      this.memos.push(confirmed ? () => confirmed.then(keep, () => undefined) : keep);
      traceAdd('regcache.hit', 1);
      return { record, repo, ...(confirmed ? { confirmed } : {}) };
    }
    traceAdd('regcache.miss', 1);
    return undefined;
  }

  /**
   * Records a layer in every writable repository that lacks a record of it (or has only an older
   * day's), in the background. `ready` is the layer's push to the target, when there is one: the
   * blob is then mounted from there instead of sent twice. `holders` are repositories known to hold
   * the blob (where it was found), used when the local store lacks it.
   */
  offerLayer(record: Omit<LayerRecord, 'created'>, from: { target?: Reference; holders?: Reference[]; ready?: Promise<unknown> } = {}): void {
    const tag = recordTag(record.key);
    for (const repo of this.writable()) {
      this.background(repo, async () => {
        const created = recordDay(this.now());
        if (await this.upToDate(repo, tag, created, (b) => parseLayerRecord(b, record.key, record.descriptor.mediaType).created)) return;
        await from.ready?.catch(() => undefined);
        const full: LayerRecord = { ...record, created };
        await this.ensureBlobs(repo, [record.descriptor], from);
        await this.putRecord(repo, tag, layerRecordManifest(full));
        await this.remember(repo, tag, { created, layer: { descriptor: record.descriptor, diffid: record.diffid } });
      });
    }
  }

  // ---- archives -------------------------------------------------------------------------------

  /**
   * The image an archive was imported as elsewhere, every blob made available to `target`, and
   * its manifests' bytes written to the local store (the push reads them from there).
   */
  async findArchive(key: string, target: Target): Promise<Found<ArchiveRecord> | undefined> {
    const tag = recordTag(key);
    for (const repo of this.readable()) {
      const bytes = await this.getRecord(repo, tag, MAX_ARCHIVE_RECORD_BYTES);
      if (!bytes) continue;
      let record: ArchiveRecord;
      try {
        record = parseArchiveRecord(bytes, key);
        // Not within `transfers`: a copy takes its own slot there (a slot held while waiting for
        // another of the same limiter is how a push of a known archive once stalled for good).
        await Promise.all(archivePins(record.image).map(async (d) => settleIn(target, d.digest, await this.materialize(d, repo, target))));
        for (const [digest, raw] of record.manifests) {
          await this.o.cache.writeBlob((async function* () { yield raw; })(), { digest, size: raw.length });
        }
      } catch (err) {
        this.brokenRecord(repo, tag, err);
        continue;
      }
      traceAdd('regcache.hit', 1);
      return { record, repo };
    }
    traceAdd('regcache.miss', 1);
    return undefined;
  }

  /** Records an imported archive's image (its manifests' bytes read from the local store). */
  offerArchive(key: string, image: ArchiveImage, manifests: Map<Digest, Buffer>, from: { target?: Reference; holders?: Reference[]; ready?: Promise<unknown> } = {}): void {
    const tag = recordTag(key);
    for (const repo of this.writable()) {
      this.background(repo, async () => {
        const created = recordDay(this.now());
        if (await this.upToDate(repo, tag, created, (b) => parseArchiveRecord(b, key).created)) return;
        await from.ready?.catch(() => undefined);
        await this.ensureBlobs(repo, archivePins(image), from);
        await this.putRecord(repo, tag, archiveRecordManifest({ key, image, manifests, created }));
        await this.remember(repo, tag, { created });
      });
    }
  }

  /** Whether a publish failed because a layer answered ahead was withdrawn: it makes its image again. */
  withdrew(err: unknown): boolean {
    return err instanceof Withdrawn;
  }

  // ---- the parts ------------------------------------------------------------------------------

  private readable(): Reference[] {
    return this.o.repos.read.filter((r) => !this.down.has(formatRepository(r)));
  }

  private writable(): Reference[] {
    return this.o.repos.write.filter((r) => !this.down.has(formatRepository(r)));
  }

  /** The record's bytes, or undefined on a miss (404) or a repository that failed (warned once). */
  private async getRecord(repo: Reference, tag: string, maxBytes: number): Promise<Buffer | undefined> {
    try {
      const client = await this.client();
      return (await client.getManifest({ ...repo, tag }, maxBytes)).bytes;
    } catch (err) {
      if (err instanceof KocacheError && err.code === 'not-found') return undefined;
      this.repoDown(repo, err);
      return undefined;
    }
  }

  /**
   * Makes a record's blob available where the target needs it. HEAD in the cache repository: its
   * size must be the record's (a record pointing at a blob that is gone, or at one of another size,
   * is a miss). For a registry target on the same registry, a mount at the same time (which a
   * registry also grants when the target has the blob already); elsewhere a HEAD in the target and, only
   * when it lacks the blob, a copy streamed through, verified by digest. For the local store, a
   * layer's `diffid` is checked too, as its bytes come (or from the store, where it has them): a
   * layer kept here is answered from the local cache from then on, so a record naming a wrong diffid
   * must not get past this point (a registry target keeps its bytes unread: see --cache-check).
   */
  private async materialize(d: Descriptor, from: Reference, target: Target, diffid?: Digest): Promise<Outcome | undefined> {
    const client = await this.client();
    if (target.kind === 'local' && (await this.o.cache.blobSize(d.digest)) === d.size && (await this.o.cache.useBlob(d.digest, d.size)) === 'ok') {
      if (diffid) await this.transfers.run(() => checkDiffid(this.o.cache.readBlob(d.digest, d.size), d, diffid));
      return undefined;
    }
    // The mount is asked for beside the HEAD, not after it: one round trip. A mount of a blob
    // whose record then proves broken only links a blob under its own digest, which nothing names.
    const to = target.kind === 'registry' ? target.repo : undefined;
    const mounting = to && sameRegistry(to, from) && to.repository !== from.repository ? client.mountBlob(to, d.digest, from.repository) : undefined;
    mounting?.catch(() => undefined);
    const size = await client.blobSize(from, d.digest);
    if (size === undefined) throw new BrokenRecord(`its blob ${d.digest} is missing from ${formatRepository(from)}`);
    if (size !== d.size) throw new BrokenRecord(`its blob ${d.digest} is ${size} bytes there, not ${d.size}`);
    if (target.kind === 'none') return undefined;
    if (target.kind === 'local') {
      await this.transfers.run(async () => {
        // getBlob hashes the bytes against d.digest and fails at their end if they differ: the
        // store takes its word for the digest instead of hashing them a second time.
        const store = (bytes: AsyncIterable<Uint8Array>) => this.o.cache.writeBlob(bytes, { size: d.size }, async () => digestHex(d.digest));
        if (!diffid) return store(client.getBlob(from, d));
        const [stored, unpacked] = tee(client.getBlob(from, d), 2) as [AsyncIterable<Buffer>, AsyncIterable<Buffer>];
        const [wrote, checked] = await Promise.allSettled([store(stored), checkDiffid(unpacked, d, diffid)]);
        // The blob's own digest first: bytes that are not the blob say nothing of the record.
        if (wrote.status === 'rejected') throw wrote.reason;
        if (checked.status === 'rejected') throw checked.reason;
        return wrote.value;
      });
      traceAdd('regcache.fetched', d.size);
      return undefined;
    }
    let outcome: Outcome;
    if (mounting && (await mounting)) {
      outcome = 'mounted';
    } else if ((await client.blobSize(target.repo, d.digest)) === d.size) {
      outcome = 'present';
    } else {
      const blob: BlobSource = { descriptor: d, open: () => client.getBlob(from, d) };
      outcome = await client.pushBlob(target.repo, blob, this.transfers);
      traceAdd('regcache.copied', d.size);
    }
    return outcome;
  }

  /** The record config and the pinned blobs in `repo`: present, mounted, or sent (local store first). */
  private async ensureBlobs(repo: Reference, pins: Descriptor[], from: { target?: Reference; holders?: Reference[] }): Promise<void> {
    const client = await this.client();
    const key = formatRepository(repo);
    let config = this.configs.get(key);
    if (!config) {
      config = client.pushBlob(repo, { descriptor: RECORD_CONFIG, open: async function* () { yield RECORD_CONFIG_BYTES; } }, this.transfers);
      this.configs.set(key, config);
    }
    await config;
    const holders = [...(from.target ? [from.target] : []), ...(from.holders ?? [])];
    await Promise.all(pins.map(async (d) => {
      const local = (await this.o.cache.blobSize(d.digest)) === d.size;
      const remote = holders.find((h) => formatRepository(h) !== key);
      const blob: BlobSource = {
        descriptor: d,
        origins: holders.filter((h) => sameRegistry(h, repo)).map((h) => ({ registry: h.registry, repository: h.repository })),
        open: () => (local || !remote ? this.o.cache.readBlob(d.digest, d.size) : client.getBlob(remote, d)),
      };
      await client.pushBlob(repo, blob, this.transfers);
    }));
  }

  private async putRecord(repo: Reference, tag: string, bytes: Buffer): Promise<void> {
    const client = await this.client();
    await client.putManifest({ ...repo, tag }, bytes, MediaType.OciManifest);
    traceAdd('regcache.put', 1);
    traceAdd('regcache.put.bytes', bytes.length);
  }

  /** True when `repo` already has this record from today (checked locally first, then with one GET). */
  private async upToDate(repo: Reference, tag: string, created: string, parse: (bytes: Buffer) => string): Promise<boolean> {
    // Found broken this run (a wrong diffid, a blob gone): written again, whatever its day.
    if (this.broken.has(recordName(repo, tag))) return false;
    const memo = await this.memo(repo, tag);
    if (memo?.created === created) return true;
    const client = await this.client();
    let bytes: Buffer;
    try {
      bytes = (await client.getManifest({ ...repo, tag }, MAX_ARCHIVE_RECORD_BYTES)).bytes;
    } catch (err) {
      if (err instanceof KocacheError && err.code === 'not-found') return false;
      throw err;
    }
    try {
      // An older day's record is written again: its new day is what gc --max-age goes by.
      return parse(bytes) === created;
    } catch {
      return false; // a broken record is replaced
    }
  }

  private background(repo: Reference, work: () => Promise<void>): void {
    const p = work().catch((err: unknown) => {
      const key = formatRepository(repo);
      // After a failed command its own error is the one line: no warning of records after it.
      if (this.down.has(key) || this.abandoned) return;
      this.down.add(key);
      this.o.warn(`registry cache ${key}: could not write records (${message(err)}); the image is not affected`);
    });
    this.pending.push(p);
  }

  private repoDown(repo: Reference, err: unknown): void {
    const key = formatRepository(repo);
    if (this.down.has(key)) return;
    this.down.add(key);
    this.o.warn(`registry cache ${key} not used: ${message(err)}; building what it would have answered`);
  }

  /** One warning per repository and run, naming the first broken record; the rest are counted. */
  private brokenRecord(repo: Reference, tag: string, err: unknown): void {
    if (!(err instanceof BrokenRecord)) return this.repoDown(repo, err);
    traceAdd('regcache.broken', 1);
    const name = recordName(repo, tag);
    this.broken.add(name);
    const key = formatRepository(repo);
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.o.warn(`registry cache record ${name} not used: ${err.message}; building instead (other broken records there are not reported)`);
  }

  private memoKey(repo: Reference, tag: string): string {
    return `${this.memoMark(repo)}/${tag}`;
  }

  /** The mark made before a repository's first memo: where there is none, no memo is looked for. */
  private memoMark(repo: Reference): string {
    return `regcache/${canonicalRegistry(repo.registry)}/${repo.repository}`;
  }

  private async memo(repo: Reference, tag: string): Promise<Memo | undefined> {
    // A fresh runner's empty cache: no index to load and read between the key and the record's GET.
    if (!hasBuilt(this.o.cache.dir, this.memoMark(repo))) return undefined;
    traceAdd('regcache.memo.read', 1);
    try {
      const rec = await this.o.cache.getRecord(this.memoKey(repo, tag), isMemo);
      return rec?.metadata;
    } catch {
      return undefined;
    }
  }

  private async remember(repo: Reference, tag: string, memo: Memo): Promise<void> {
    const d = memo.layer?.descriptor ?? RECORD_CONFIG;
    markBuilt(this.o.cache.dir, this.memoMark(repo));
    try {
      await this.o.cache.putRecord<Memo>(this.memoKey(repo, tag), { digest: d.digest, size: d.size }, memo);
    } catch {
      // a memo only saves a request next time
    }
  }

  private async forget(repo: Reference, tag: string): Promise<void> {
    await this.o.cache.dropRecord(this.memoKey(repo, tag)).catch(() => undefined);
  }
}

/** `registry/repo:tag`: a record, in messages and in the sets of records this run met. */
function recordName(repo: Reference, tag: string): string {
  return `${formatRepository(repo)}:${tag}`;
}

function sameRegistry(a: Reference, b: Reference): boolean {
  return canonicalRegistry(a.registry) === canonicalRegistry(b.registry);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Whether a layer's bytes unpack to the diffid its record names; BrokenRecord when they do not. */
async function checkDiffid(blob: AsyncIterable<Uint8Array>, d: Descriptor, diffid: Digest): Promise<void> {
  const tar = unpackLayer(blob, d.mediaType, `registry cache layer ${d.digest}`);
  // A zstd record where this Node reads no zstd: never asked for (zstd builds need that Node too).
  if (!tar) throw new BrokenRecord(`its layer ${d.digest} is zstd, which this Node cannot read`);
  const wrong = (m: Mismatch) => new BrokenRecord(`its layer ${d.digest} unpacks to ${describeMismatch(m)}, not the diffid ${diffid} it names`);
  try {
    for await (const _ of verify(tar, { digest: diffid }, wrong)) { /* hashed as it streams */ }
  } catch (err) {
    if (err instanceof KocacheError && err.code === 'archive') throw new BrokenRecord(`its layer ${d.digest} does not unpack: ${err.message}`);
    throw err;
  }
}
