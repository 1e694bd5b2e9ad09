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
   * gives up on it: counted from its last answer to anything, or from the start of the first of
   * the tries that stalled one after another. Every wait (a try, the pause before the next) ends
   * by then.
   */
  totalMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 10_000, idleMs: 20_000, totalMs: 60_000 };

/**
 * A registry silent for the whole registry timeout: a request ends with it at that moment (undici's
 * own timers are coarse, up to a second late each) and it is not tried again.
 */
export class SilenceError extends Error {
  readonly code = 'KOCACHE_SILENT';

  constructor(host: string, silentMs: number) {
    super(`${host} answered nothing for ${seconds(silentMs)} s`);
    this.name = 'SilenceError';
  }
}

/** The errors that mean "the other side went silent" (as opposed to refused or reset). */
const STALL_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT', 'KOCACHE_SILENT']);

export function isStall(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && STALL_CODES.has(code)) return true;
  }
  return false;
}

/** Milliseconds as seconds for messages, to a tenth: "0.4", "6". */
export function seconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}
