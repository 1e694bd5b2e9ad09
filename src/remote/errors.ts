import { KocacheError, errnoCode } from '../errors.js';

/** One entry of the error body the distribution spec defines: `{"errors":[{code,message,detail}]}`. */
export interface RegistryErrorEntry {
  code: string;
  message?: string;
}

export function parseRegistryErrors(body: string): RegistryErrorEntry[] {
  try {
    const parsed = JSON.parse(body) as { errors?: unknown };
    if (!Array.isArray(parsed.errors)) return [];
    return parsed.errors
      .filter((e): e is { code: unknown; message?: unknown } => typeof e === 'object' && e !== null && 'code' in e)
      .map((e) => ({ code: String(e.code), ...(typeof e.message === 'string' ? { message: e.message } : {}) }));
  } catch {
    return [];
  }
}

/** The registry's own words, squeezed onto one line and kept short. */
export function describeRegistryErrors(entries: RegistryErrorEntry[], body: string): string {
  const text = entries.length > 0
    ? [...new Set(entries.map((e) => (e.message ? `${e.code}: ${e.message}` : e.code)))].join('; ')
    : body.replace(/<[^>]*>/g, ' ');
  return oneLine(text).slice(0, 300);
}

export function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

const TLS_CODES = /^(?:CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|ERR_SSL_|ERR_TLS_|HOSTNAME_MISMATCH|ERR_OSSL_)/;

function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e: unknown = err; e && out.length < 5; e = (e as { cause?: unknown }).cause) out.push(e);
  return out;
}

/**
 * A failed connection as one line that names the registry and says why: "cannot reach registry
 * 127.0.0.1:1: connection refused". TLS failures get a hint, since the usual cause is a plain-HTTP
 * registry that is not listed as insecure.
 */
export function networkError(registry: string, err: unknown): KocacheError {
  if (err instanceof KocacheError) return err;
  let why: string | undefined;
  for (const e of causes(err)) {
    const code = errnoCode(e);
    if (code === undefined) continue;
    if (TLS_CODES.test(code)) return tlsError(registry, code, e, err);
    why =
      code === 'ECONNREFUSED' ? 'connection refused'
      : code === 'ENOTFOUND' ? 'host not found'
      : code === 'EAI_AGAIN' ? 'DNS lookup failed (temporary)'
      : code === 'EHOSTUNREACH' || code === 'ENETUNREACH' ? 'no route to host'
      : code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' ? 'connection timed out'
      : code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE' ? 'connection reset'
      : code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' ? 'registry stopped answering'
      : undefined;
    if (why) break;
  }
  if (!why) why = err instanceof Error ? oneLine(err.message) : String(err);
  return new KocacheError('unreachable', `cannot reach registry ${registry}: ${why}`, { cause: err });
}

function tlsError(registry: string, code: string, e: unknown, err: unknown): KocacheError {
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
    return new KocacheError('tls', `TLS error talking to registry ${registry}: it does not answer in TLS (if it serves plain HTTP, list it in KOCACHE_INSECURE_REGISTRIES)`, { cause: err });
  }
  const message = e instanceof Error ? oneLine(e.message) : '';
  // OpenSSL's own messages are file-and-line dumps; Node's certificate messages read well, up to
  // the advice Node 24 appends ("; if the root CA is installed locally, try running Node.js with
  // --use-system-ca"): the hint below is the one for kocache.
  const reason = message && !message.includes('routines:') ? message.split('; ')[0]! : code;
  const hint = /CERT|ISSUER|SELF_SIGNED|VERIFY/.test(code)
    ? ' (for a private CA, point NODE_EXTRA_CA_CERTS at its certificate; for plain HTTP, list the registry in KOCACHE_INSECURE_REGISTRIES)'
    : '';
  return new KocacheError('tls', `TLS error talking to registry ${registry}: ${reason}${hint}`, { cause: err });
}
