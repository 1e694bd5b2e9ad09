import { KocacheError } from '../errors.js';
import type { Authenticator } from './auth.js';
import { describeRegistryErrors, networkError, parseRegistryErrors } from './errors.js';
import { DEFAULT_RETRY, RetryableError, type RetryPolicy, isRetryableStatus, parseRetryAfter, withRetries } from './retry.js';
import { isStall } from './timeouts.js';
import { type HttpRequest, type HttpResponse, type Transport, discard, readText } from './transport.js';

/** One registry request: where, with which token scopes, and what it is for (named in errors). */
export interface RegistryCall {
  registry: string;
  scopes: string[];
  method: HttpRequest['method'];
  url: string;
  headers?: Record<string, string>;
  body?: Buffer | AsyncIterable<Uint8Array>;
  /** What is being fetched or written, for messages: "127.0.0.1:5000/app:v1", "blob sha256:...". */
  what: string;
  /** See HttpRequest.answerAllowanceMs. */
  answerAllowanceMs?: number;
}

/**
 * Sends registry requests with authentication and retries. A request whose body is a Buffer (or
 * that has none) is retried here; one with a streamed body cannot be replayed, so its failures
 * surface as RetryableError for the caller (the uploader) to restart from a fresh source.
 */
export class Requester {
  constructor(
    private readonly transport: Transport,
    private readonly auth: Authenticator,
    private readonly warn: (msg: string) => void,
    readonly policy: RetryPolicy = DEFAULT_RETRY,
  ) {}

  url(registry: string, path: string): string {
    return `${this.transport.baseUrl(registry)}${path}`;
  }

  /**
   * One attempt: authenticates (learning the challenge on a first 401), and turns 408/429/5xx into
   * RetryableError. The registry's credentials go only to the registry's own origin: a URL
   * elsewhere (an upload Location on a storage host) is sent none, and a refusal from there is
   * final, never a challenge to learn (it would let another host choose where they go next).
   */
  async once(call: RegistryCall): Promise<HttpResponse> {
    const replayable = call.body === undefined || Buffer.isBuffer(call.body);
    const origin = this.transport.origin(call.registry);
    const own = new URL(call.url).origin === origin;
    for (let learned = 0; ; learned++) {
      const authorization = own ? await this.auth.header(call.registry, call.scopes) : undefined;
      const req: HttpRequest = { method: call.method, url: call.url, headers: { ...call.headers } };
      if (authorization) req.credentials = { origin, authorization };
      if (call.body !== undefined) req.body = call.body;
      if (call.answerAllowanceMs !== undefined) req.answerAllowanceMs = call.answerAllowanceMs;
      const res = await this.transport.send(req);
      if ((res.status === 401 || res.status === 403) && new URL(res.url).origin !== origin) {
        await discard(res);
        const host = new URL(res.url).host;
        throw new KocacheError('auth', `${call.method} ${call.what}: ${host}, where ${call.registry} sent it, answered ${res.status}; kocache sends ${call.registry}'s credentials only to ${call.registry} itself`);
      }
      if (res.status === 401) {
        if (learned < 2 && await this.auth.learn(call.registry, call.scopes, res, authorization)) {
          await discard(res);
          if (replayable) continue;
          // A streamed body is gone: the uploader starts over, now with a fresh token.
          throw new RetryableError(`${call.method} ${call.what}: the registry refused the token; starting again`);
        }
        throw await this.auth.failure(call.registry, res, call.what, call.scopes);
      }
      if (res.status === 403) {
        if (learned < 2 && replayable && this.auth.refused(call.registry, call.scopes, authorization)) {
          await discard(res);
          continue;
        }
        throw await this.auth.failure(call.registry, res, call.what, call.scopes);
      }
      if (isRetryableStatus(res.status)) {
        const body = await readText(res).catch(() => '');
        const errors = parseRegistryErrors(body);
        // distribution answers some validation failures with 500; trying again cannot help those.
        if (errors.some((e) => PERMANENT_CODES.has(e.code))) throw this.unexpectedBody(res.status, body, call);
        const detail = describeRegistryErrors(errors, body);
        throw new RetryableError(
          `${call.method} ${call.what}: registry answered ${res.status}${detail ? ` (${detail})` : ''}`,
          parseRetryAfter(res.header('retry-after')),
        );
      }
      return res;
    }
  }

  /** `once` with retries, and every failure as a one-line KocacheError. */
  call(call: RegistryCall): Promise<HttpResponse> {
    return this.retrying(call.registry, () => this.once(call), `${call.method} ${call.what}`);
  }

  /**
   * Runs a multi-request operation with retries; used for uploads, which restart from the
   * beginning. A registry silent for the whole timeout (Timeouts.totalMs, counted from its last
   * answer to anything, or from the start) ends it with one line, whatever tries are left.
   */
  async retrying<T>(registry: string, attempt: (n: number) => Promise<T>, what = `request to ${registry}`): Promise<T> {
    const origin = this.transport.origin(registry);
    const started = Date.now();
    const { totalMs } = this.transport.timeouts;
    const bounded = async (n: number): Promise<T> => {
      try {
        return await attempt(n);
      } catch (err) {
        if (!isStall(err)) throw err;
        const silent = Date.now() - Math.max(started, this.transport.lastAnswer(origin) ?? 0);
        if (silent < totalMs) throw err;
        throw new KocacheError('unreachable', `registry ${registry} stopped answering: nothing for ${Math.round(silent / 1000)} s (${what}, ${n} ${n === 1 ? 'try' : 'tries'}; registry timeout ${totalMs / 1000} s)`, { cause: err });
      }
    };
    try {
      return await withRetries(this.policy, bounded, (err, n, delay) => {
        const why = err instanceof RetryableError ? err.message : networkError(registry, err).message;
        this.warn(`${why}; retrying in ${(delay / 1000).toFixed(1)} s (try ${n + 1} of ${this.policy.tries})`);
      });
    } catch (err) {
      if (err instanceof KocacheError) throw err;
      if (err instanceof RetryableError) {
        const wait = err.retryAfterMs !== undefined && err.retryAfterMs > this.policy.maxRetryAfterMs
          ? `; it asks to wait ${Math.ceil(err.retryAfterMs / 1000)} s, longer than kocache waits`
          : `, ${err.attempts} ${err.attempts === 1 ? 'try' : 'tries'}`;
        throw new KocacheError('registry', `${err.message}${wait}`, { cause: err });
      }
      throw networkError(registry, err);
    }
  }

  /** The error for a response that is none of the statuses the caller expected. */
  async unexpected(res: HttpResponse, call: UnexpectedCall): Promise<KocacheError> {
    return this.unexpectedBody(res.status, await readText(res).catch(() => ''), call);
  }

  unexpectedBody(status: number, body: string, call: UnexpectedCall): KocacheError {
    const res = { status };
    const errors = parseRegistryErrors(body);
    const codes = new Set(errors.map((e) => e.code));
    if (res.status === 404 || codes.has('MANIFEST_UNKNOWN') || codes.has('NAME_UNKNOWN') || codes.has('BLOB_UNKNOWN')) {
      if (codes.has('NAME_UNKNOWN')) return new KocacheError('not-found', `${call.what}: repository not found`);
      if (codes.has('BLOB_UNKNOWN') || codes.has('BLOB_UPLOAD_UNKNOWN')) return new KocacheError('not-found', `${call.what}: not found in the registry`);
      if (codes.has('MANIFEST_UNKNOWN') || (res.status === 404 && !call.blob)) return new KocacheError('not-found', `${call.what}: manifest not found`);
      if (call.blob) return new KocacheError('not-found', `${call.what}: not found in the registry`);
    }
    if (codes.has('DIGEST_INVALID')) return new KocacheError('digest-mismatch', `${call.what}: digest mismatch: the registry computed a different digest for the bytes sent`);
    if (codes.has('MANIFEST_BLOB_UNKNOWN')) return new KocacheError('registry', `${call.what}: the registry lacks a blob the manifest names (${describeRegistryErrors(errors, body)})`);
    const detail = describeRegistryErrors(errors, body);
    return new KocacheError('registry', `${call.method} ${call.what}: registry answered ${res.status}${detail ? ` (${detail})` : ''}`);
  }
}

/** The request a response answered; `blob`: a blob's (a bare 404 is then no manifest's). */
type UnexpectedCall = Pick<RegistryCall, 'method' | 'what'> & { blob?: boolean };

/** Error codes that say the request itself is wrong, whatever the status they come with. */
const PERMANENT_CODES = new Set([
  'BLOB_UNKNOWN', 'BLOB_UPLOAD_INVALID', 'DIGEST_INVALID', 'MANIFEST_BLOB_UNKNOWN', 'MANIFEST_INVALID',
  'MANIFEST_UNVERIFIED', 'NAME_INVALID', 'NAME_UNKNOWN', 'SIZE_INVALID', 'TAG_INVALID', 'UNSUPPORTED', 'DENIED',
]);

/** Resolves a Location header against the URL that returned it (registries send both relative and absolute ones). */
export function resolveLocation(res: HttpResponse, what: string): string {
  const loc = res.header('location');
  if (!loc) throw new KocacheError('registry', `${what}: the registry answered ${res.status} without a Location header`);
  return new URL(loc, res.url).href;
}

/** Appends query parameters to a URL that may already carry some (upload session state). */
export function withQuery(url: string, params: Record<string, string>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.href;
}
