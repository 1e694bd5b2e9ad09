import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { Agent } from './undici.js';
import { KocacheError } from '../errors.js';
import { connectorTrusting, deferredCaCertsPath } from './extra-ca.js';
import { DEFAULT_TIMEOUTS, type Timeouts } from './timeouts.js';

/**
 * An HTTP exchange as the registry client sees it; bodies are Buffers (replayable) or streams (not).
 * `headers` never carries Authorization: that goes in `credentials`, bound to the origin it is for.
 */
export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  headers?: Record<string, string>;
  body?: Buffer | AsyncIterable<Uint8Array>;
  credentials?: Credential | undefined;
  /** Time to wait for the answer beyond the idle timeout (a registry committing a large blob). */
  answerAllowanceMs?: number;
}

/** An Authorization value and the one origin (scheme://host:port) it may be sent to. */
export interface Credential {
  origin: string;
  authorization: string;
}

export interface HttpResponse {
  status: number;
  /** The URL that answered (after redirects): its origin says who answered, and relative Locations resolve against it. */
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
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export interface TransportOptions {
  insecureRegistries?: string[];
  userAgent?: string;
  warn?: (msg: string) => void;
  timeouts?: Partial<Timeouts>;
}

/**
 * Connections to registries: one undici Agent (a keep-alive pool per origin). Every request goes
 * through `send`, which is the one place an Authorization header is attached: only to a URL of the
 * origin its credential was issued for, checked again on every redirect hop. So an upload Location,
 * a redirect or a retry that leads to another host:port carries no credentials, whoever built the
 * request. GET and HEAD follow redirects (blob reads go to storage hosts); a redirected upload
 * could not replay its body anyway.
 */
export class Transport {
  private readonly agent: InstanceType<typeof Agent>;
  private readonly insecure: Set<string>;
  readonly timeouts: Timeouts;
  private readonly warn: (msg: string) => void;
  /** When each origin last answered (response headers received), for the stall budget. */
  private readonly answered = new Map<string, number>();
  private readonly warnedStall = new Set<string>();

  constructor(opts: TransportOptions = {}) {
    const given = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    // No single wait outlasts the registry timeout: a short --registry-timeout bounds every try.
    this.timeouts = { ...given, connectMs: Math.min(given.connectMs, given.totalMs), idleMs: Math.min(given.idleMs, given.totalMs) };
    this.warn = opts.warn ?? (() => {});
    // HTTP/2 where the registry offers it (over TLS, by ALPN): undici closes an HTTP/1.1
    // connection after every HEAD unless the server says `Connection: keep-alive`, which Go's
    // server (the distribution registry) does not, so each HEAD-before-upload cost a new TLS
    // handshake; over HTTP/2 the HEADs share connections (test/remote-tls.test.ts).
    // The connect timeout covers the TLS handshake; the headers timeout (paused while a body is
    // being written, unless the server stops reading it) and the body timeout are both silences.
    const connect = { allowH2: true, timeout: this.timeouts.connectMs };
    const deferredCa = deferredCaCertsPath();
    this.agent = new Agent({
      allowH2: true, keepAliveTimeout: 30_000, connections: 16,
      headersTimeout: this.timeouts.idleMs, bodyTimeout: this.timeouts.idleMs,
      connect: deferredCa ? connectorTrusting(deferredCa, connect, this.warn) : connect,
    });
    this.insecure = new Set([...(opts.insecureRegistries ?? []), ...insecureRegistriesFromEnv()].map((s) => s.toLowerCase()));
    this.userAgent = opts.userAgent ?? 'kocache';
  }

  readonly userAgent: string;

  /** `http://` for loopback and listed insecure registries, `https://` for everything else. */
  baseUrl(registry: string): string {
    // Docker Hub's name is not its API host.
    if (registry === 'docker.io') return 'https://registry-1.docker.io';
    return `${this.plainHttp(registry) ? 'http' : 'https'}://${registry}`;
  }

  /** The origin a registry's credentials and tokens belong to. */
  origin(registry: string): string {
    return new URL(this.baseUrl(registry)).origin;
  }

  /** Whether plain HTTP to this host[:port] was asked for (or is loopback). */
  plainHttp(host: string): boolean {
    return LOOPBACK.test(host) || this.insecure.has(host.toLowerCase());
  }

  /** When `origin` last answered a request (ms since epoch), or undefined. */
  lastAnswer(origin: string): number | undefined {
    return this.answered.get(origin);
  }

  async send(req: HttpRequest): Promise<HttpResponse> {
    if (req.headers && Object.keys(req.headers).some((k) => k.toLowerCase() === 'authorization')) {
      throw new Error('Authorization goes in HttpRequest.credentials, bound to its origin');
    }
    const follow = req.method === 'GET' || req.method === 'HEAD';
    let url = new URL(req.url);
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'user-agent': this.userAgent, ...req.headers };
      if (req.credentials && url.origin === req.credentials.origin) headers.authorization = req.credentials.authorization;
      const res = await this.exchange(url, req, headers);
      const location = res.headers.location;
      if (follow && REDIRECTS.has(res.statusCode) && typeof location === 'string') {
        await res.body.dump().catch(() => undefined);
        if (hop >= MAX_REDIRECTS) throw new KocacheError('registry', `${url.host}: more than ${MAX_REDIRECTS} redirects for ${new URL(req.url).pathname}`);
        url = new URL(location, url);
        if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new KocacheError('registry', `${new URL(req.url).host}: redirected to a non-HTTP URL`);
        continue;
      }
      const all = (name: string): string[] => {
        const v = res.headers[name.toLowerCase()];
        return v === undefined ? [] : Array.isArray(v) ? v : [v];
      };
      return { status: res.statusCode, url: url.href, header: (name) => all(name)[0], headerAll: all, body: res.body };
    }
  }

  /**
   * One request to one URL. Warns once per origin when it stays silent for a while (a registry
   * that accepts connections and never answers printed nothing for minutes): the silence is
   * counted from the last piece of request body handed over, or from the start.
   */
  private async exchange(url: URL, req: HttpRequest, headers: Record<string, string>): Promise<Dispatcher.ResponseData> {
    const origin = url.origin;
    const t = this.timeouts;
    const patience = Math.min(t.idleMs + (req.answerAllowanceMs ?? 0), t.totalMs);
    const warnAfter = Math.min(5_000, t.idleMs / 2);
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      if (this.warnedStall.has(origin)) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (this.warnedStall.has(origin)) return;
        this.warnedStall.add(origin);
        this.warn(`${url.host} has not answered ${req.method} ${url.pathname} for ${seconds(warnAfter)} s; waiting up to ${seconds(patience)} s, then retrying, for ${seconds(t.totalMs)} s in all`);
      }, warnAfter);
      timer.unref();
    };
    let body: Buffer | Readable | null = null;
    if (req.body !== undefined) {
      body = Buffer.isBuffer(req.body) ? req.body : Readable.from(watched(req.body, arm), { objectMode: false });
    }
    arm();
    try {
      const res = await this.agent.request({
        origin, path: `${url.pathname}${url.search}`, method: req.method as Dispatcher.HttpMethod, headers, body,
        headersTimeout: patience,
      });
      this.answered.set(origin, Date.now());
      return res;
    } finally {
      clearTimeout(timer);
    }
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

/** Passes a request body through, calling `onChunk` as each piece is taken (progress, for the stall warning). */
async function* watched(body: AsyncIterable<Uint8Array>, onChunk: () => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    onChunk();
    yield chunk;
  }
  onChunk();
}

function seconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}
