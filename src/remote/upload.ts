import { readAhead, rechunk } from '../compress/chunks.js';
import { KocacheError } from '../errors.js';
import { type BlobSource, readSource } from '../oci/pushable.js';
import type { Digest } from '../oci/digest.js';
import type { BlobSink } from '../oci/sink.js';
import { type Reference } from '../reference/reference.js';
import { traceAdd } from '../util/trace.js';
import { describeMismatch, verify } from '../util/verify.js';
import { repositoryScope } from './auth.js';
import { type Requester, resolveLocation, withQuery } from './request.js';
import { discard, type HttpResponse } from './transport.js';

export interface UploadOptions {
  /** Blobs at least this big go up in PATCH chunks; smaller ones in one PUT. */
  chunkThreshold: number;
  chunkSize: number;
}

/** 16 MiB: below it one request is fastest; above it a chunked upload keeps each request short. */
export const DEFAULT_UPLOAD: UploadOptions = { chunkThreshold: 16 << 20, chunkSize: 8 << 20 };

const OCTETS = 'application/octet-stream';

/**
 * Uploads one blob: a session (POST), then the bytes, in one PUT or in PATCH chunks followed by
 * a closing PUT. Each step answers with the Location of the next, which is followed as given.
 * `mountFrom` first asks the registry to link the blob from another repository; a registry that
 * cannot answers with an upload session, which is then used. Every failure restarts from a new
 * session with the source opened again (the bytes already sent are not trusted to be there).
 */
export async function uploadBlob(
  rq: Requester,
  repo: Reference,
  blob: BlobSource,
  mountFrom: string | undefined,
  opts: UploadOptions = DEFAULT_UPLOAD,
  held?: Promise<string | undefined>,
): Promise<'mounted' | 'uploaded'> {
  const { digest } = blob.descriptor;
  const what = `${repo.registry}/${repo.repository}@${digest}`;
  let tryMount = mountFrom !== undefined && mountFrom !== repo.repository;
  // A session opened ahead serves the first try only: a retry starts from a new one.
  let ahead = held;
  return rq.retrying(repo.registry, async () => {
    let session: HttpResponse;
    const push = [repositoryScope(repo.repository, 'pull,push')];
    const start = rq.url(repo.registry, `/v2/${repo.repository}/blobs/uploads/`);
    const opened = await ahead;
    ahead = undefined;
    if (opened !== undefined) {
      traceAdd('upload.held', 1);
      try {
        return await sendBlob(rq, repo, blob, opened, what, opts);
      } catch {
        // The session may have gone stale while it waited: this try goes on with a new one.
      }
    }
    if (tryMount && mountFrom) {
      try {
        session = await rq.once({
          registry: repo.registry, method: 'POST', what,
          url: withQuery(start, { mount: digest, from: mountFrom }),
          scopes: [...push, repositoryScope(mountFrom, 'pull')],
          headers: { 'content-length': '0' },
        });
      } catch (err) {
        // Not allowed to read the origin: upload instead (the push scope alone may still work).
        if (!(err instanceof KocacheError && err.code === 'auth')) throw err;
        tryMount = false;
        session = await startSession(rq, repo, start, push, what);
      }
      if (session.status === 201) {
        await discard(session);
        checkDigestHeader(session, digest, what);
        return 'mounted';
      }
      // One try is enough: a registry that refused the mount will refuse it again.
      tryMount = false;
    } else {
      session = await startSession(rq, repo, start, push, what);
    }
    if (session.status !== 202) throw await rq.unexpected(session, { method: 'POST', what });
    await discard(session);
    return sendBlob(rq, repo, blob, resolveLocation(session, what), what, opts);
  }, `upload of ${what}`);
}

/** The bytes of a blob into an open session at `location`: one PUT, or PATCH chunks and a closing PUT. */
async function sendBlob(rq: Requester, repo: Reference, blob: BlobSource, at: string, what: string, opts: UploadOptions): Promise<'uploaded'> {
  let location = at;
  const { digest, size } = blob.descriptor;
  const push = [repositoryScope(repo.repository, 'pull,push')];
  // The source must yield exactly the bytes its descriptor names: a bad source is a bug upstream,
  // not the registry's, and is stopped before the registry sees a wrong length.
  const source = blob.verified
    ? readSource(blob)
    : verify(readSource(blob), blob.descriptor, (m) => new KocacheError('digest-mismatch', `digest mismatch: the source of ${digest} yields ${describeMismatch(m)}`), (c) => traceAdd('upload.check', c.byteLength));
  let final: HttpResponse;
  if (size >= opts.chunkThreshold) {
    let offset = 0;
    // The next chunk is read (and its bytes checked) while the registry takes this one: a chunk
    // at a time, the reading and the registry's writing took turns (docs/performance.md).
    for await (const chunk of readAhead(rechunk(source, opts.chunkSize), 1)) {
      location = await patchChunk(rq, repo, push, location, what, chunk, offset);
      offset += chunk.length;
    }
    final = await closeSession(rq, repo, push, location, what, digest, size);
  } else {
    final = await rq.once({
      registry: repo.registry, scopes: push, method: 'PUT', url: withQuery(location, { digest }), what,
      body: source,
      headers: { 'content-type': OCTETS, 'content-length': String(size) },
    });
  }
  if (final.status !== 201) throw await rq.unexpected(final, { method: 'PUT', what });
  await discard(final);
  checkDigestHeader(final, digest, what);
  return 'uploaded';
}

/**
 * An upload session opened before its blob exists: a publish whose tag is new opens one while the
 * layers are still being built, for the image config it will make. That small blob then goes up in
 * one PUT, where a HEAD, a POST and a PUT would follow the build one after another. It serves one
 * blob; one never taken is deleted (release). A session that could not be opened is no session:
 * the blob then goes up as any other.
 */
export class HeldSession {
  private readonly location: Promise<string | undefined>;
  private readonly push: string[];
  private taken = false;

  constructor(private readonly rq: Requester, private readonly repo: Reference) {
    this.push = [repositoryScope(repo.repository, 'pull,push')];
    this.location = openSession(rq, repo, this.push, `${repo.registry}/${repo.repository} (an upload opened ahead)`).catch(() => undefined);
  }

  /** The session's Location, for the first blob to ask; undefined for every later one. */
  take(): Promise<string | undefined> | undefined {
    if (this.taken) return undefined;
    this.taken = true;
    return this.location;
  }

  /** Deletes the session if no blob took it (best effort, never throws). */
  async release(): Promise<void> {
    if (this.taken) return;
    this.taken = true;
    const location = await this.location;
    if (location !== undefined) await dropSession(this.rq, this.repo, this.push, location, `${this.repo.registry}/${this.repo.repository}`);
  }
}

/**
 * How long to wait for the answer to the PUT that closes a chunked upload: the registry may check
 * or move the whole blob first (a storage back end copying it): beyond the usual silence, a wait
 * that grows with its size, at 50 MB/s.
 */
function commitPatience(size: number): number {
  return size / 50_000;
}

/** One chunk of a session at `offset`; the answer's Location is where the next request goes. */
async function patchChunk(rq: Requester, repo: Reference, scopes: string[], location: string, what: string, chunk: Buffer, offset: number): Promise<string> {
  const res = await rq.once({
    registry: repo.registry, scopes, method: 'PATCH', url: location, what, body: chunk,
    headers: { 'content-type': OCTETS, 'content-length': String(chunk.length), 'content-range': `${offset}-${offset + chunk.length - 1}` },
  });
  if (res.status !== 202) throw await rq.unexpected(res, { method: 'PATCH', what });
  await discard(res);
  return resolveLocation(res, what);
}

/** The PUT that closes a chunked session, naming the digest (its answer is the caller's to check). */
function closeSession(rq: Requester, repo: Reference, scopes: string[], location: string, what: string, digest: Digest, size: number): Promise<HttpResponse> {
  return rq.once({
    registry: repo.registry, scopes, method: 'PUT', url: withQuery(location, { digest }), what,
    headers: { 'content-length': '0' }, answerAllowanceMs: commitPatience(size),
  });
}

async function startSession(rq: Requester, repo: Reference, url: string, scopes: string[], what: string): Promise<HttpResponse> {
  return rq.once({ registry: repo.registry, method: 'POST', url, scopes, what, headers: { 'content-length': '0' } });
}

/** A new upload session's Location (POST, which must answer 202). */
async function openSession(rq: Requester, repo: Reference, scopes: string[], what: string): Promise<string> {
  const session = await startSession(rq, repo, rq.url(repo.registry, `/v2/${repo.repository}/blobs/uploads/`), scopes, what);
  if (session.status !== 202) throw await rq.unexpected(session, { method: 'POST', what });
  await discard(session);
  return resolveLocation(session, what);
}

/** Deletes an upload session given up (best effort: a registry also expires them on its own). */
async function dropSession(rq: Requester, repo: Reference, scopes: string[], location: string, what: string): Promise<void> {
  await rq.once({ registry: repo.registry, scopes, method: 'DELETE', url: location, what }).then(discard, () => undefined);
}

/** Registries echo the digest they stored; a different one means the bytes were changed on the way. */
export function checkDigestHeader(res: HttpResponse, digest: Digest, what: string): void {
  const got = res.header('docker-content-digest');
  if (got !== undefined && got !== digest) {
    throw new KocacheError('digest-mismatch', `${what}: digest mismatch: the registry stored ${got}`);
  }
}

/** Full chunks a streamed upload holds for the registry before the writer is asked to wait. */
const STREAM_QUEUE = 3;

/**
 * A blob uploaded while it is made (`kocache publish` building a layer): the session starts once
 * the bytes pass the chunk threshold, full chunks go up in order as PATCHes, and the closing PUT
 * names the digest when `end` tells it. Nothing here may fail the build: a refused request, a
 * digest the registry disagrees with, or a build that fails ends the stream (the session is
 * deleted, best effort) and `committed` says undefined, so the blob is pushed from the content
 * store as any other. No retries: that push has them. A blob the registry already had is sent
 * anyway: its digest was not known until every byte had gone (docs/registries.md).
 * The writer waits while STREAM_QUEUE chunks are waiting (a slow registry slows the build to its
 * pace, bounded memory), so the build and the upload end at about the same time.
 */
export class StreamedUpload implements BlobSink {
  /** The blob once the registry holds it; undefined when the stream was given up. */
  readonly committed: Promise<{ digest: Digest; size: number } | undefined>;
  private settle!: (v: { digest: Digest; size: number } | undefined) => void;
  private chunk: Buffer;
  private fill = 0;
  private total = 0;
  private readonly queue: Buffer[] = [];
  /** Chunks sent, to fill again: a new 8 MiB buffer per chunk made the GC run far more often. */
  private readonly spare: Buffer[] = [];
  private state: 'open' | 'ended' | 'dropped' = 'open';
  private blob: { digest: Digest; size: number } | undefined;
  private sender: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private room: (() => void) | undefined;
  private readonly what: string;

  constructor(
    private readonly rq: Requester,
    private readonly repo: Reference,
    private readonly opts: UploadOptions = DEFAULT_UPLOAD,
    private readonly onSent?: (bytes: number) => void,
  ) {
    this.committed = new Promise((resolve) => (this.settle = resolve));
    this.chunk = Buffer.allocUnsafe(opts.chunkSize);
    this.what = `${repo.registry}/${repo.repository} (a blob being built)`;
  }

  /** Whether the bytes are still going up (false once given up). */
  get alive(): boolean {
    return this.state !== 'dropped';
  }

  write(bytes: Uint8Array): void | Promise<void> {
    if (this.state !== 'open') return;
    this.total += bytes.byteLength;
    let off = 0;
    while (off < bytes.byteLength) {
      const n = Math.min(this.chunk.length - this.fill, bytes.byteLength - off);
      this.chunk.set(bytes.subarray(off, off + n), this.fill);
      this.fill += n;
      off += n;
      if (this.fill === this.chunk.length) {
        this.queue.push(this.chunk);
        this.chunk = this.spare.pop() ?? Buffer.allocUnsafe(this.opts.chunkSize);
        this.fill = 0;
      }
    }
    // Below the threshold a blob goes up in one PUT from the store: no session until it is passed.
    if (!this.sender && this.total >= this.opts.chunkThreshold) this.sender = this.send();
    this.poke();
    if (this.sender && this.queue.length >= STREAM_QUEUE) return new Promise((resolve) => (this.room = resolve));
  }

  end(blob: { digest: Digest; size: number }): void {
    if (this.state !== 'open') return;
    if (!this.sender || blob.size !== this.total) return this.drop();
    if (this.fill > 0) this.queue.push(this.chunk.subarray(0, this.fill));
    this.fill = 0;
    this.blob = blob;
    this.state = 'ended';
    this.poke();
  }

  abort(): void {
    if (this.state !== 'dropped') this.drop();
  }

  private drop(): void {
    this.state = 'dropped';
    this.queue.length = 0;
    this.poke();
    if (!this.sender) this.settle(undefined);
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
    if (this.queue.length < STREAM_QUEUE || this.state === 'dropped') {
      const room = this.room;
      this.room = undefined;
      room?.();
    }
  }

  private async send(): Promise<void> {
    const { rq, repo, what } = this;
    const push = [repositoryScope(repo.repository, 'pull,push')];
    let location: string | undefined;
    try {
      location = await openSession(rq, repo, push, what);
      let offset = 0;
      for (;;) {
        if (this.state === 'dropped') throw new Error('given up');
        const chunk = this.queue.shift();
        if (!chunk) {
          if (this.state === 'ended') break;
          await new Promise<void>((resolve) => (this.wake = resolve));
          continue;
        }
        this.poke();
        location = await patchChunk(rq, repo, push, location, what, chunk, offset);
        offset += chunk.length;
        if (chunk.length === this.opts.chunkSize) this.spare.push(chunk);
        traceAdd('upload.streamed', chunk.length);
        this.onSent?.(chunk.length);
      }
      const blob = this.blob!;
      const done = `${repo.registry}/${repo.repository}@${blob.digest}`;
      const final = await closeSession(rq, repo, push, location, done, blob.digest, blob.size);
      if (final.status !== 201) throw await rq.unexpected(final, { method: 'PUT', what: done });
      await discard(final);
      checkDigestHeader(final, blob.digest, done);
      location = undefined;
      this.settle(blob);
    } catch {
      this.state = 'dropped';
      this.queue.length = 0;
      this.poke();
      traceAdd('upload.stream.dropped', 1);
      if (location !== undefined) await dropSession(rq, repo, push, location, what);
      this.settle(undefined);
    }
  }
}
