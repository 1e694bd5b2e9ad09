import { readAhead, rechunk } from '../compress/chunks.js';
import { KocacheError } from '../errors.js';
import type { BlobSource } from '../oci/pushable.js';
import type { Digest } from '../oci/digest.js';
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
): Promise<'mounted' | 'uploaded'> {
  const { digest, size } = blob.descriptor;
  const what = `${repo.registry}/${repo.repository}@${digest}`;
  let tryMount = mountFrom !== undefined && mountFrom !== repo.repository;
  return rq.retrying(repo.registry, async () => {
    let session: HttpResponse;
    const push = [repositoryScope(repo.repository, 'pull,push')];
    const start = rq.url(repo.registry, `/v2/${repo.repository}/blobs/uploads/`);
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
    let location = resolveLocation(session, what);

    // The source must yield exactly the bytes its descriptor names: a bad source is a bug upstream,
    // not the registry's, and is stopped before the registry sees a wrong length.
    const d = blob.descriptor;
    const source = blob.verified
      ? blob.open()
      : verify(blob.open(), d, (m) => new KocacheError('digest-mismatch', `digest mismatch: the source of ${d.digest} yields ${describeMismatch(m)}`), (c) => traceAdd('upload.check', c.byteLength));
    let final: HttpResponse;
    if (size >= opts.chunkThreshold) {
      let offset = 0;
      // The next chunk is read (and its bytes checked) while the registry takes this one: a chunk
      // at a time, the reading and the registry's writing took turns (docs/performance.md).
      for await (const chunk of readAhead(rechunk(source, opts.chunkSize), 1)) {
        const res = await rq.once({
          registry: repo.registry, scopes: push, method: 'PATCH', url: location, what, body: chunk,
          headers: { 'content-type': OCTETS, 'content-length': String(chunk.length), 'content-range': `${offset}-${offset + chunk.length - 1}` },
        });
        if (res.status !== 202) throw await rq.unexpected(res, { method: 'PATCH', what });
        await discard(res);
        location = resolveLocation(res, what);
        offset += chunk.length;
      }
      final = await rq.once({
        registry: repo.registry, scopes: push, method: 'PUT', url: withQuery(location, { digest }), what,
        headers: { 'content-length': '0' }, answerAllowanceMs: commitPatience(size),
      });
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
  }, `upload of ${what}`);
}

/**
 * How long to wait for the answer to the PUT that closes a chunked upload: the registry may check
 * or move the whole blob first (a storage back end copying it): beyond the usual silence, a wait
 * that grows with its size, at 50 MB/s.
 */
function commitPatience(size: number): number {
  return size / 50_000;
}

async function startSession(rq: Requester, repo: Reference, url: string, scopes: string[], what: string): Promise<HttpResponse> {
  return rq.once({ registry: repo.registry, method: 'POST', url, scopes, what, headers: { 'content-length': '0' } });
}

/** Registries echo the digest they stored; a different one means the bytes were changed on the way. */
export function checkDigestHeader(res: HttpResponse, digest: Digest, what: string): void {
  const got = res.header('docker-content-digest');
  if (got !== undefined && got !== digest) {
    throw new KocacheError('digest-mismatch', `${what}: digest mismatch: the registry stored ${got}`);
  }
}
