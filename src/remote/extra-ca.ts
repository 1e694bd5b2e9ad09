import { readFileSync } from 'node:fs';
import type tls from 'node:tls';
import type { buildConnector as BuildConnector } from 'undici';
import { buildConnector } from './undici.js';

/**
 * Extra trusted CAs that the `kocache` launcher (src/cli/startup/kocache.sh) kept from Node's start-up:
 * Node 20 parses NODE_EXTRA_CA_CERTS before any JavaScript runs, on every command (its cost is in
 * the register of docs/performance.md), although only commands that open a TLS connection use it. The launcher passes the
 * file's name here instead, and it is read at the first TLS connection.
 */
export function deferredCaCertsPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const path = env['KOCACHE_DEFERRED_CA_CERTS'];
  return path ? path : undefined;
}

let trusted: { path: string; context: tls.SecureContext } | undefined;

/**
 * What Node would have trusted: its bundled roots plus the file's certificates. One context for
 * the whole process, so the ~280 certificates are parsed once, not per connection. A file that
 * cannot be read or parsed is warned about and skipped, as Node does at start-up.
 */
export function secureContextWith(path: string, warn: (msg: string) => void): tls.SecureContext {
  if (trusted?.path === path) return trusted.context;
  // Loaded here, not imported: most runs never open a TLS connection (loopback registries, hits).
  const { createSecureContext, rootCertificates } = process.getBuiltinModule('node:tls');
  let context: tls.SecureContext;
  try {
    context = createSecureContext({ ca: [...rootCertificates, readFileSync(path, 'utf8')] });
  } catch (err) {
    warn(`ignoring extra CA certificates from ${path}: ${err instanceof Error ? err.message : String(err)}`);
    context = createSecureContext({ ca: [...rootCertificates] });
  }
  trusted = { path, context };
  return context;
}

/**
 * An undici connector that trusts the deferred CAs on TLS connections, made on the first one;
 * plain HTTP (a registry on loopback) never loads them.
 */
export function connectorTrusting(path: string, opts: BuildConnector.BuildOptions, warn: (msg: string) => void): BuildConnector.connector {
  let plain: BuildConnector.connector | undefined;
  let secure: BuildConnector.connector | undefined;
  return (options, callback) => {
    if (options.protocol === 'https:') {
      secure ??= buildConnector({ ...opts, secureContext: secureContextWith(path, warn) });
      secure(options, callback);
    } else {
      plain ??= buildConnector(opts);
      plain(options, callback);
    }
  };
}
