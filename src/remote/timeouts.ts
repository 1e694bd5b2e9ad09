/**
 * How long kocache waits on a registry. Every registry request is bounded: a server that accepts
 * connections and never answers must end the command in about a minute with one line, not hang
 * it (undici's own defaults are 300 s per try, four tries).
 */
export interface Timeouts {
  /** To open a connection, TLS handshake included. */
  connectMs: number;
  /**
   * The longest silence within one request: waiting for the response headers, or between two
   * pieces of a body, either way (a server that stops reading an upload counts too).
   */
  idleMs: number;
  /**
   * How long a registry may stay silent, across the retries of a request, before the command
   * gives up on it: counted from its last answer to anything (or from the request's start).
   */
  totalMs: number;
}

/** Frozen: exported, and a caller's change would otherwise alter every other caller's default. */
export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = Object.freeze({ connectMs: 10_000, idleMs: 20_000, totalMs: 60_000 });

/** The undici errors that mean "the other side went silent" (as opposed to refused or reset). */
const STALL_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

export function isStall(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && STALL_CODES.has(code)) return true;
  }
  return false;
}
