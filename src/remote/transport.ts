import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { Agent, redirect } from './undici.js';
import { KocacheError } from '../errors.js';
import { connectorTrusting, deferredCaCertsPath } from './extra-ca.js';

/** An HTTP exchange as the registry client sees it; bodies are Buffers (replayable) or streams (not). */
export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  headers?: Record<string, string>;
  body?: Buffer | AsyncIterable<Uint8Array>;
}

export interface HttpResponse {
  status: number;
  /** The URL that answered (after redirects), for resolving a relative Location. */
  url: string;
  header(name: string): string | undefined;
  headerAll(name: string): string[];
  body: Dispatcher.ResponseData['body'];
}

/** Hosts that speak plain HTTP without being told: loopback. */
const LOOPBACK = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d+)?$/i;

/** Registries listed in KOCACHE_INSECURE_REGISTRIES (comma-separated hosts). */
export function insecureRegistriesFromEnv(env = process.env): string[] {
  return (env.KOCACHE_INSECURE_REGISTRIES ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
}

const MAX_REDIRECTS = 5;

/**
 * Connections to registries: one undici Agent (a keep-alive pool per origin). Blob GETs are
 * redirected to storage on other hosts, which a single-origin Pool refuses; the redirect
 * interceptor drops Authorization when the origin changes, so registry credentials never reach
 * the storage host. Only GET and HEAD follow redirects; a redirected upload could not replay
 * its body anyway.
 */
export class Transport {
  private readonly agent: InstanceType<typeof Agent>;
  private readonly redirecting: Dispatcher;
  private readonly insecure: Set<string>;

  constructor(opts: { insecureRegistries?: string[]; userAgent?: string; warn?: (msg: string) => void } = {}) {
    // The headers timeout restarts when a body finishes sending; a registry re-hashing a
    // multi-gigabyte blob before it answers the closing PUT needs minutes, not seconds.
    // HTTP/2 where the registry offers it (over TLS, by ALPN): undici closes an HTTP/1.1
    // connection after every HEAD unless the server says `Connection: keep-alive`, which Go's
    // server (the distribution registry) does not, so each HEAD-before-upload cost a new TLS
    // handshake; over HTTP/2 the HEADs share connections (test/remote-tls.test.ts).
    const connect = { allowH2: true, timeout: 15_000 };
    const deferredCa = deferredCaCertsPath();
    this.agent = new Agent({
      allowH2: true, keepAliveTimeout: 30_000, connections: 16, headersTimeout: 300_000, bodyTimeout: 300_000,
      connect: deferredCa ? connectorTrusting(deferredCa, connect, opts.warn ?? (() => {})) : connect,
    });
    this.redirecting = this.agent.compose(redirect({ maxRedirections: MAX_REDIRECTS }));
    this.insecure = new Set([...(opts.insecureRegistries ?? []), ...insecureRegistriesFromEnv()].map((s) => s.toLowerCase()));
    this.userAgent = opts.userAgent ?? 'kocache';
  }

  readonly userAgent: string;

  /** `http://` for loopback and listed insecure registries, `https://` for everything else. */
  baseUrl(registry: string): string {
    // Docker Hub's name is not its API host.
    if (registry === 'docker.io') return 'https://registry-1.docker.io';
    const plain = LOOPBACK.test(registry) || this.insecure.has(registry.toLowerCase());
    return `${plain ? 'http' : 'https'}://${registry}`;
  }

  async send(req: HttpRequest): Promise<HttpResponse> {
    const follow = req.method === 'GET' || req.method === 'HEAD';
    const url = new URL(req.url);
    const res = await (follow ? this.redirecting : this.agent).request({
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: req.method as Dispatcher.HttpMethod,
      headers: { 'user-agent': this.userAgent, ...req.headers },
      body: req.body === undefined ? null : Buffer.isBuffer(req.body) ? req.body : Readable.from(req.body, { objectMode: false }),
    });
    const headers = res.headers;
    const all = (name: string): string[] => {
      const v = headers[name.toLowerCase()];
      return v === undefined ? [] : Array.isArray(v) ? v : [v];
    };
    return {
      status: res.statusCode,
      url: req.url,
      header: (name) => all(name)[0],
      headerAll: all,
      body: res.body,
    };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** Reads a small response body as text (error bodies, tokens, manifests). */
export async function readText(res: HttpResponse, limit = 4 << 20): Promise<string> {
  return (await readBytes(res, limit)).toString('utf8');
}

export async function readBytes(res: HttpResponse, limit = 4 << 20): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of res.body) {
    const b = chunk as Buffer;
    n += b.length;
    if (n > limit) {
      res.body.destroy();
      throw new KocacheError('registry', `${new URL(res.url).host}: response larger than ${limit} bytes from ${new URL(res.url).pathname}`);
    }
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/** Throws away a body so the connection goes back to the pool. */
export async function discard(res: HttpResponse): Promise<void> {
  try {
    await res.body.dump();
  } catch {
    // a broken body on a response we do not need is not worth reporting
  }
}
