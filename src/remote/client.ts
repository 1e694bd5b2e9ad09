import type { CacheStore } from '../cache/store.js';
import { KocacheError } from '../errors.js';
import type { BlobSource } from '../oci/pushable.js';
import type { Limiter } from '../util/limit.js';
import { describeMismatch, verify } from '../util/verify.js';
import type { Descriptor } from '../oci/descriptor.js';
import { type Digest, isDigest, sha256Digest } from '../oci/digest.js';
import { MediaType } from '../oci/mediatypes.js';
import { type Reference, canonicalRegistry, formatReference, formatRepository } from '../reference/reference.js';
import { Authenticator, repositoryScope } from './auth.js';
import { CredentialStore } from './credentials.js';
import { Requester, withQuery } from './request.js';
import { DEFAULT_RETRY, RetryableError, type RetryPolicy, isRetryableNetworkError } from './retry.js';
import { BlobLocations } from './seen.js';
import type { Timeouts } from './timeouts.js';
import { Transport, type TransportOptions, discard, readBytes, type HttpResponse } from './transport.js';
import { DEFAULT_UPLOAD, HeldSession, StreamedUpload, type UploadOptions, checkDigestHeader, uploadBlob } from './upload.js';

export interface ClientOptions {
  /** Registries reached over plain HTTP (loopback always is); KOCACHE_INSECURE_REGISTRIES adds more. */
  insecureRegistries?: string[];
  /** Where config.json lives; default $DOCKER_CONFIG, else ~/.docker. */
  dockerConfigDir?: string;
  /** Default number of parallel blob transfers for pushImage. */
  jobs?: number;
  warn?: (msg: string) => void;
  userAgent?: string;
  /** When given, where blobs were seen is remembered across runs (for cross-repository mounts). */
  cache?: CacheStore;
  /** Overrides of the retry policy (tests shorten the waits). */
  retry?: Partial<RetryPolicy>;
  /** Overrides of the chunked-upload sizes. */
  upload?: Partial<UploadOptions>;
  /** Connect, idle and total timeouts (DEFAULT_TIMEOUTS: 10, 20 and 60 s). */
  timeouts?: Partial<Timeouts>;
}

/** What a client made by `share` uses of the client it came from. */
export interface SharedParts {
  transport: Transport;
  auth: Authenticator;
  seen: BlobLocations;
}

/** Every manifest type kocache reads; Docker schema 1 is deliberately absent (unsigned, obsolete). */
export const MANIFEST_ACCEPT = [MediaType.OciIndex, MediaType.OciManifest, MediaType.DockerManifestList, MediaType.DockerManifest];
const MAX_MANIFEST_BYTES = 8 << 20;
/** A blob up to this size goes into a session opened ahead (an image config: a long history makes it tens of KB). */
const HELD_MAX_BYTES = 256 << 10;

/**
 * A client for OCI distribution registries: resolves and fetches manifests, streams blobs with
 * verification, and pushes blobs the cheap way first (a cross-repository mount of a blob known
 * elsewhere on the registry, else a HEAD, then an upload). One client holds one connection pool and one token cache; share it.
 */
export class RegistryClient {
  readonly jobs: number | undefined;
  private readonly transport: Transport;
  private readonly rq: Requester;
  private readonly seen: BlobLocations;
  private readonly uploadOpts: UploadOptions;
  private readonly warn: (msg: string) => void;
  private readonly pushing = new Map<string, Promise<unknown>>();
  private readonly auth: Authenticator;
  /** Whether the connections are this client's own to close (not those of the client it was shared from). */
  private readonly owner: boolean;

  /** `shared`: made by `share`, which is how to get one. */
  constructor(opts: ClientOptions = {}, shared?: SharedParts) {
    this.warn = opts.warn ?? (() => {});
    this.jobs = opts.jobs;
    if (shared) {
      ({ transport: this.transport, auth: this.auth, seen: this.seen } = shared);
    } else {
      const transportOpts: TransportOptions = { warn: this.warn };
      if (opts.insecureRegistries) transportOpts.insecureRegistries = opts.insecureRegistries;
      if (opts.userAgent) transportOpts.userAgent = opts.userAgent;
      if (opts.timeouts) transportOpts.timeouts = opts.timeouts;
      this.transport = new Transport(transportOpts);
      this.auth = new Authenticator(this.transport, new CredentialStore(opts.dockerConfigDir, this.warn, this.transport.timeouts.totalMs));
      this.seen = new BlobLocations(opts.cache);
    }
    this.owner = !shared;
    this.rq = new Requester(this.transport, this.auth, this.warn, { ...DEFAULT_RETRY, ...opts.retry });
    this.uploadOpts = { ...DEFAULT_UPLOAD, ...opts.upload };
  }

  /**
   * A client with its own retry policy (and jobs, and warnings) over this one's connections,
   * credentials, tokens and blob locations: a second set would cost each registry a new
   * connection (a TLS handshake), a 401 to learn its challenge and tokens asked for again.
   * Closing it leaves this client open.
   */
  share(opts: Pick<ClientOptions, 'retry' | 'jobs' | 'warn'> = {}): RegistryClient {
    return new RegistryClient({ ...opts, upload: this.uploadOpts }, { transport: this.transport, auth: this.auth, seen: this.seen });
  }

  /**
   * The repositories a command will push to and read from: every token asked for on their
   * registries asks for all of these scopes too, so one token serves the whole command (a publish:
   * its target, its cache repositories). A token server that grants less, or refuses, is asked
   * again for each request's own scopes alone.
   */
  expect(o: { push?: Reference[]; pull?: Reference[] }): void {
    for (const r of o.push ?? []) this.auth.expect(r.registry, [repositoryScope(r.repository, 'pull,push')]);
    for (const r of o.pull ?? []) this.auth.expect(r.registry, [repositoryScope(r.repository, 'pull')]);
  }

  async resolve(ref: Reference): Promise<Descriptor | undefined> {
    const what = formatReference(ref);
    const res = await this.rq.call({
      registry: ref.registry, scopes: pull(ref), method: 'HEAD', what,
      url: this.manifestUrl(ref), headers: { accept: MANIFEST_ACCEPT.join(', ') },
    });
    await discard(res);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw await this.rq.unexpected(res, { method: 'HEAD', what });
    const digest = res.header('docker-content-digest');
    const mediaType = baseMediaType(res.header('content-type'));
    const size = Number(res.header('content-length'));
    // Some registries leave these out of HEAD answers; the manifest itself is authoritative.
    if (!digest || !isDigest(digest) || !mediaType || !Number.isSafeInteger(size) || size <= 0) {
      try {
        return (await this.getManifest(ref)).descriptor;
      } catch (err) {
        if (err instanceof KocacheError && err.code === 'not-found') return undefined;
        throw err;
      }
    }
    if (ref.digest && digest !== ref.digest) throw new KocacheError('digest-mismatch', `${what}: digest mismatch: the registry answered for ${digest}`);
    return { mediaType, digest, size };
  }

  /** `maxBytes` bounds the body (a cache record is a few KB; anything larger is refused unread). */
  async getManifest(ref: Reference, maxBytes = MAX_MANIFEST_BYTES): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
    const what = formatReference(ref);
    // The body is read inside the retry, so a connection dropped mid-manifest is tried again.
    const { res, bytes } = await this.rq.retrying(ref.registry, async () => {
      const r = await this.rq.once({
        registry: ref.registry, scopes: pull(ref), method: 'GET', what,
        url: this.manifestUrl(ref), headers: { accept: MANIFEST_ACCEPT.join(', ') },
      });
      if (r.status !== 200) throw await this.rq.unexpected(r, { method: 'GET', what });
      return { res: r, bytes: await readBytes(r, maxBytes) };
    }, `GET ${what}`);
    const digest = sha256Digest(bytes);
    if (ref.digest && digest !== ref.digest) {
      throw new KocacheError('digest-mismatch', `${what}: digest mismatch: the registry sent a manifest hashing to ${digest}`);
    }
    const served = baseMediaType(res.header('content-type'));
    const mediaType = served && (MANIFEST_ACCEPT as string[]).includes(served) ? served : embeddedMediaType(bytes) ?? served;
    if (!mediaType || !(MANIFEST_ACCEPT as string[]).includes(mediaType)) {
      throw new KocacheError('registry', `${what}: unsupported manifest type ${JSON.stringify(mediaType ?? 'none')} (kocache reads OCI and Docker v2 schema 2)`);
    }
    return { descriptor: { mediaType, digest, size: bytes.length }, bytes };
  }

  async putManifest(ref: Reference, bytes: Buffer, mediaType: string): Promise<Descriptor> {
    const digest = sha256Digest(bytes);
    if (ref.digest && ref.tag === undefined && ref.digest !== digest) {
      throw new KocacheError('digest-mismatch', `${formatReference(ref)}: digest mismatch: the manifest to push hashes to ${digest}`);
    }
    // A tag names the upload when there is one; otherwise the content's own digest does.
    const target: Reference = ref.tag !== undefined
      ? { registry: ref.registry, repository: ref.repository, tag: ref.tag }
      : { registry: ref.registry, repository: ref.repository, digest };
    const what = formatReference(target);
    const res = await this.rq.retrying(ref.registry, async () => {
      const r = await this.rq.once({
        registry: ref.registry, scopes: pushScope(ref), method: 'PUT', what,
        url: this.manifestUrl(target), body: bytes,
        headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      });
      if (r.status === 201 || r.status === 200) return r;
      const err = await this.rq.unexpected(r, { method: 'PUT', what });
      // distribution rewrites a blob's link file in place whenever a client finishes uploading
      // that blob: a manifest checked at that moment reads an empty link and is refused as
      // DIGEST_INVALID (docs/registries.md). The digest is ours, so the refusal is the race's.
      if (err.code === 'digest-mismatch') throw new RetryableError(`PUT ${what}: registry answered ${r.status} (DIGEST_INVALID)`, undefined, { cause: err });
      throw err;
    }, `PUT ${what}`);
    await discard(res);
    checkDigestHeader(res, digest, what);
    return { mediaType, digest, size: bytes.length };
  }

  async blobExists(repo: Reference, digest: Digest): Promise<boolean> {
    return this.headBlob(repo, digest, pull(repo));
  }

  /** A blob's size as the registry reports it (HEAD), or undefined when it lacks the blob. */
  async blobSize(repo: Reference, digest: Digest, scopes: string[] = pull(repo)): Promise<number | undefined> {
    const what = `${formatRepository(repo)}@${digest}`;
    const res = await this.rq.call({
      registry: repo.registry, scopes, method: 'HEAD', what,
      url: this.rq.url(repo.registry, `/v2/${repo.repository}/blobs/${digest}`),
    });
    await discard(res);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw await this.rq.unexpected(res, { method: 'HEAD', what });
    const size = Number(res.header('content-length'));
    return Number.isSafeInteger(size) && size >= 0 ? size : -1;
  }

  /**
   * Links a blob from another repository of the same registry, and nothing else: true when the
   * registry mounted it, false when it could not (it lacks the blob there, or mounts are off). The
   * upload session a refused mount opens is cancelled, never used: unlike pushBlob, no byte is sent.
   */
  async mountBlob(repo: Reference, digest: Digest, from: string): Promise<boolean> {
    const what = `${formatRepository(repo)}@${digest}`;
    const start = this.rq.url(repo.registry, `/v2/${repo.repository}/blobs/uploads/`);
    const res = await this.rq.call({
      registry: repo.registry, method: 'POST', what,
      url: withQuery(start, { mount: digest, from }),
      scopes: [repositoryScope(repo.repository, 'pull,push'), repositoryScope(from, 'pull')],
      headers: { 'content-length': '0' },
    });
    await discard(res);
    if (res.status === 201) {
      checkDigestHeader(res, digest, what);
      this.seen.record(canonicalRegistry(repo.registry), repo.repository, digest, 0);
      return true;
    }
    if (res.status !== 202) throw await this.rq.unexpected(res, { method: 'POST', what });
    const location = res.header('location');
    if (location) {
      const url = new URL(location, res.url).href;
      await this.rq.call({ registry: repo.registry, method: 'DELETE', what, url, scopes: [repositoryScope(repo.repository, 'pull,push')] })
        .then(discard, () => undefined);
    }
    return false;
  }

  /**
   * Removes a manifest by digest (distribution removes every tag on it). False when the registry
   * does not allow deletes (distribution answers 405 UNSUPPORTED unless delete.enabled).
   */
  async deleteManifest(repo: Reference, digest: Digest): Promise<'deleted' | 'absent' | 'unsupported'> {
    const what = `${formatRepository(repo)}@${digest}`;
    let res: HttpResponse;
    try {
      res = await this.rq.call({
        registry: repo.registry, scopes: [repositoryScope(repo.repository, 'delete')], method: 'DELETE', what,
        url: this.rq.url(repo.registry, `/v2/${repo.repository}/manifests/${digest}`),
      });
    } catch (err) {
      if (err instanceof KocacheError && /\bUNSUPPORTED\b/.test(err.message)) return 'unsupported';
      throw err;
    }
    await discard(res);
    if (res.status === 202 || res.status === 200) return 'deleted';
    if (res.status === 404) return 'absent';
    if (res.status === 405) return 'unsupported';
    throw await this.rq.unexpected(res, { method: 'DELETE', what });
  }

  /** Every tag of a repository, following `Link` pagination; [] for a repository that does not exist. */
  async listTags(repo: Reference): Promise<string[]> {
    const what = `${formatRepository(repo)} tags`;
    const tags: string[] = [];
    let url: string | undefined = this.rq.url(repo.registry, `/v2/${repo.repository}/tags/list?n=1000`);
    for (let page = 0; url && page < 10_000; page++) {
      const res = await this.rq.call({ registry: repo.registry, scopes: pull(repo), method: 'GET', what, url });
      if (res.status === 404) {
        await discard(res);
        return tags;
      }
      if (res.status !== 200) throw await this.rq.unexpected(res, { method: 'GET', what });
      let body: { tags?: unknown };
      try {
        body = JSON.parse((await readBytes(res, 64 << 20)).toString('utf8')) as { tags?: unknown };
      } catch {
        throw new KocacheError('registry', `${what}: the registry sent a tag list that is not JSON`);
      }
      if (Array.isArray(body.tags)) for (const t of body.tags) if (typeof t === 'string') tags.push(t);
      const next = /<([^>]+)>\s*;\s*rel="?next"?/.exec(res.header('link') ?? '')?.[1];
      url = next ? new URL(next, res.url).href : undefined;
    }
    return tags;
  }

  /**
   * Streams a blob, following redirects to storage hosts (without the registry's credentials).
   * The bytes are verified as they pass (util/verify.ts): the stream throws as soon as there are
   * more than the descriptor's size, else at its end if they do not match, so a caller must not
   * trust what it wrote until the iteration has finished.
   */
  async *getBlob(repo: Reference, descriptor: Descriptor): AsyncGenerator<Uint8Array> {
    const what = `${formatRepository(repo)}@${descriptor.digest}`;
    yield* verify(this.blobBytes(repo, descriptor, what), descriptor, (m) =>
      new KocacheError('digest-mismatch', `${what}: digest mismatch: the registry sent ${describeMismatch(m)}`));
    this.seen.record(canonicalRegistry(repo.registry), repo.repository, descriptor.digest, descriptor.size);
  }

  /** A blob's bytes as the registry sends them, unverified; a connection dropped mid-blob resumes with a Range request. */
  private async *blobBytes(repo: Reference, descriptor: Descriptor, what: string): AsyncGenerator<Buffer> {
    let received = 0;
    for (let attempt = 1; ; attempt++) {
      const headers: Record<string, string> = {};
      if (received > 0) headers.range = `bytes=${received}-`;
      const res: HttpResponse = await this.rq.call({
        registry: repo.registry, scopes: pull(repo), method: 'GET', what, headers,
        url: this.rq.url(repo.registry, `/v2/${repo.repository}/blobs/${descriptor.digest}`),
      });
      if (res.status !== 200 && res.status !== 206) throw await this.rq.unexpected(res, { method: 'GET', what, blob: true });
      // A 200 to a Range request resends everything: skip what was already passed on.
      let skip = res.status === 200 ? received : 0;
      try {
        for await (const raw of res.body) {
          let chunk = raw as Buffer;
          if (skip > 0) {
            const n = Math.min(skip, chunk.length);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.length === 0) continue;
          }
          received += chunk.length;
          yield chunk;
        }
      } catch (err) {
        if (!isRetryableNetworkError(err) || attempt >= this.rq.policy.tries) {
          if (err instanceof KocacheError) throw err;
          throw new KocacheError('unreachable', `${what}: download broke off after ${received} of ${descriptor.size} bytes: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        this.warn(`${what}: connection dropped after ${received} bytes; resuming`);
        continue;
      }
      return;
    }
  }

  /**
   * HEAD, then a mount from a repository of the same registry known to hold the blob, then an
   * upload. Concurrent pushes of one blob to one repository (images sharing layers, pushed in
   * parallel) share a single transfer; the later callers see it as 'present'. `transfer`, when
   * given, bounds the mount-or-upload part only: a HEAD is cheap and need not wait for a slot.
   */
  async pushBlob(repo: Reference, blob: BlobSource, transfer?: Limiter, held?: HeldSession): Promise<'present' | 'mounted' | 'uploaded'> {
    const key = `${canonicalRegistry(repo.registry)}/${repo.repository}@${blob.descriptor.digest}`;
    const running = this.pushing.get(key);
    if (running) {
      await running;
      return 'present';
    }
    const p = this.pushBlobOnce(repo, blob, transfer, held);
    this.pushing.set(key, p);
    try {
      return await p;
    } finally {
      this.pushing.delete(key);
    }
  }

  private async pushBlobOnce(repo: Reference, blob: BlobSource, transfer: Limiter | undefined, held: HeldSession | undefined): Promise<'present' | 'mounted' | 'uploaded'> {
    const { digest, size } = blob.descriptor;
    const registry = canonicalRegistry(repo.registry);
    // A small blob and a session opened ahead: sending it costs one request, as a HEAD or a mount
    // would, and a blob the registry had already is only linked again.
    const ahead = size <= HELD_MAX_BYTES ? held?.take() : undefined;
    if (ahead) return this.transferAndNote(repo, blob, undefined, transfer, ahead);
    const seenIn = await this.seen.repositories(registry, digest);
    const candidates = [
      ...(blob.origins ?? []).filter((o) => canonicalRegistry(o.registry) === registry).map((o) => o.repository),
      ...seenIn,
    ].filter((r) => r !== repo.repository);
    // Known elsewhere on this registry and not known here: a mount straight away, with no HEAD
    // before it (a registry grants the mount when the target holds the blob already too).
    let from = candidates[0];
    if (from !== undefined && !seenIn.includes(repo.repository)) {
      if (await this.tryMount(repo, digest, from)) return 'mounted';
      from = undefined; // refused: asking again in the upload would be refused again
    }
    if (await this.headBlob(repo, digest, pushScope(repo))) {
      this.seen.record(registry, repo.repository, digest, size);
      return 'present';
    }
    return this.transferAndNote(repo, blob, from, transfer);
  }

  /** transferBlob within `transfer`'s bound; the registry then noted as holding the blob. */
  private async transferAndNote(repo: Reference, blob: BlobSource, from: string | undefined, transfer: Limiter | undefined, held?: Promise<string | undefined>): Promise<'mounted' | 'uploaded'> {
    const send = () => this.transferBlob(repo, blob, from, held);
    const outcome = await (transfer ? transfer.run(send) : send());
    this.seen.record(canonicalRegistry(repo.registry), repo.repository, blob.descriptor.digest, blob.descriptor.size);
    return outcome;
  }

  /** mountBlob, false also when the origin may not be read (the push scope alone may still do). */
  private async tryMount(repo: Reference, digest: Digest, from: string): Promise<boolean> {
    try {
      return await this.mountBlob(repo, digest, from);
    } catch (err) {
      if (err instanceof KocacheError && err.code === 'auth') return false;
      throw err;
    }
  }

  /** Where blobs were seen has reached the cache (pushes write it in the background). */
  async hintsWritten(): Promise<void> {
    await this.seen.settled();
  }

  /**
   * An upload of a blob still being made, its bytes written as they come (StreamedUpload). Once
   * committed, the registry is noted as holding it, as after any push.
   */
  streamBlob(repo: Reference, onSent?: (bytes: number) => void): StreamedUpload {
    const up = new StreamedUpload(this.rq, repo, this.uploadOpts, onSent);
    void up.committed.then((b) => b && this.seen.record(canonicalRegistry(repo.registry), repo.repository, b.digest, b.size));
    return up;
  }

  /** A mount from `from` when given and the registry allows it, else an upload (into `held` when given). */
  protected transferBlob(repo: Reference, blob: BlobSource, from: string | undefined, held?: Promise<string | undefined>): Promise<'mounted' | 'uploaded'> {
    return uploadBlob(this.rq, repo, blob, from, this.uploadOpts, held);
  }

  /** An upload session opened now, for a small blob not known yet (HeldSession). */
  holdSession(repo: Reference): HeldSession {
    return new HeldSession(this.rq, repo);
  }

  async close(): Promise<void> {
    await this.seen.settled();
    if (this.owner) await this.transport.close();
  }

  private async headBlob(repo: Reference, digest: Digest, scopes: string[]): Promise<boolean> {
    const what = `${formatRepository(repo)}@${digest}`;
    const res = await this.rq.call({
      registry: repo.registry, scopes, method: 'HEAD', what,
      url: this.rq.url(repo.registry, `/v2/${repo.repository}/blobs/${digest}`),
    });
    await discard(res);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw await this.rq.unexpected(res, { method: 'HEAD', what });
  }

  private manifestUrl(ref: Reference): string {
    const id = ref.digest ?? ref.tag ?? 'latest';
    return this.rq.url(ref.registry, `/v2/${ref.repository}/manifests/${id}`);
  }
}

function pull(ref: Reference): string[] {
  return [repositoryScope(ref.repository, 'pull')];
}

function pushScope(ref: Reference): string[] {
  return [repositoryScope(ref.repository, 'pull,push')];
}

/** `application/json; charset=utf-8` -> `application/json`. */
function baseMediaType(contentType: string | undefined): string | undefined {
  const mt = contentType?.split(';')[0]?.trim();
  return mt ? mt : undefined;
}

/** A manifest served as plain JSON still names its type inside (OCI recommends the field). */
function embeddedMediaType(bytes: Buffer): string | undefined {
  try {
    const m = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown; manifests?: unknown; config?: unknown };
    if (typeof m.mediaType === 'string') return m.mediaType;
    if (Array.isArray(m.manifests)) return MediaType.OciIndex;
    if (m.config) return MediaType.OciManifest;
  } catch {
    // not JSON: no type
  }
  return undefined;
}
