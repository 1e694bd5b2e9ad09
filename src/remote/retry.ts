import { KocacheError, errnoCode } from '../errors.js';

/**
 * When and how long to wait before trying a registry request again. Registries shed load with
 * 429/503 and proxies drop idle keep-alive sockets, so a push that gives up on the first hiccup
 * fails far more often than the registry does; a few jittered tries cover nearly all of it.
 */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  tries: number;
  /** Base delay; attempt n waits a random time up to base * 4^(n-1), capped at maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** The longest Retry-After kocache will honour; a registry asking for more gets the error instead. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { tries: 4, baseDelayMs: 200, maxDelayMs: 5_000, maxRetryAfterMs: 60_000 };

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

// Not UND_ERR_CLOSED: that is this process's own client, closed (a command that failed ends its
// other requests so), which no try can reach again.
const RETRYABLE_CODES = new Set([
  'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'EAI_AGAIN',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
]);

/** A dropped or timed-out connection; a refused one is not retried (nothing listens, waiting will not help). */
export function isRetryableNetworkError(err: unknown): boolean {
  // A decision already made (and worded for the user) is final, whatever caused it.
  if (err instanceof KocacheError) return false;
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = errnoCode(e);
    if (code !== undefined && RETRYABLE_CODES.has(code)) return true;
    if (e instanceof Error && /other side closed|socket hang up|socket closed/i.test(e.message)) return true;
  }
  return false;
}

/** `Retry-After` as milliseconds: delta-seconds or an HTTP date. Undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

/** Full jitter: spreads clients that failed together so they do not retry together. */
export function backoffDelay(policy: RetryPolicy, attempt: number, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.maxRetryAfterMs);
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 4 ** (attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A failure that may succeed if tried again, with the server's requested wait if it gave one. */
export class RetryableError extends Error {
  /** How many attempts were made when this one was given up on (set by withRetries). */
  attempts = 1;

  constructor(message: string, readonly retryAfterMs?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RetryableError';
  }
}

/**
 * Runs `attempt` until it succeeds, throws something not retryable, or runs out of tries; then
 * the last error is thrown. `attempt` signals "try again" by throwing a RetryableError or a
 * dropped-connection error.
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  attempt: (n: number) => Promise<T>,
  onRetry?: (err: unknown, n: number, delayMs: number) => void,
): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (err instanceof RetryableError) err.attempts = n;
      const retryable = err instanceof RetryableError || isRetryableNetworkError(err);
      if (!retryable || n >= policy.tries) throw err;
      const requested = err instanceof RetryableError ? err.retryAfterMs : undefined;
      if (requested !== undefined && requested > policy.maxRetryAfterMs) throw err;
      const delay = backoffDelay(policy, n, requested);
      onRetry?.(err, n, delay);
      await sleep(delay);
    }
  }
}
