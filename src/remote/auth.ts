import { KocacheError } from '../errors.js';
import type { CredentialStore, Credentials } from './credentials.js';
import { describeRegistryErrors, networkError, parseRegistryErrors } from './errors.js';
import { type Credential, type HttpResponse, type Transport, discard, readText } from './transport.js';

/** A parsed `WWW-Authenticate` header (RFC 7235), as registries send it. */
export interface Challenge {
  scheme: 'basic' | 'bearer';
  realm?: string;
  service?: string;
  /** Set on a refusal: `insufficient_scope` means authenticated but not allowed. */
  error?: string;
}

export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const scheme = (m[1] ?? '').toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  const re = /([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (let p = re.exec(m[2] ?? ''); p; p = re.exec(m[2] ?? '')) {
    params[(p[1] ?? '').toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  const c: Challenge = { scheme };
  if (params.realm !== undefined) c.realm = params.realm;
  if (params.service !== undefined) c.service = params.service;
  if (params.error !== undefined) c.error = params.error;
  return c;
}

/** `repository:<name>:<actions>`, the token scope grammar of the distribution token spec. */
export function repositoryScope(repository: string, actions: 'pull' | 'pull,push' | 'delete'): string {
  return `repository:${repository}:${actions}`;
}

interface Token {
  value: string;
  /** ms since epoch after which it is not reused. */
  expires: number;
}

/**
 * Turns a registry's challenge into an Authorization header: Basic from the user's credentials,
 * or Bearer from a token server, a token per registry+scope set reused until shortly before it
 * expires. The challenge is learned from the first 401 a registry returns and remembered, so
 * later requests carry the right header from the start.
 */
export class Authenticator {
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, Promise<Token>>();
  /** Per registry, scopes every token there also asks for (RegistryClient.expect). */
  private readonly expected = new Map<string, string[]>();
  /** Scope sets (tokenKey) a token asked for with the expected scopes did not serve: asked for alone. */
  private readonly narrow = new Set<string>();

  constructor(private readonly transport: Transport, private readonly credentials: CredentialStore) {}

  /** Adds scopes that every token asked for on `registry` asks for too. */
  expect(registry: string, scopes: string[]): void {
    this.expected.set(registry, mergeScopes([...(this.expected.get(registry) ?? []), ...scopes]));
  }

  /** The scopes a token for `scopes` is asked with: these and the expected ones, unless that failed before. */
  private widen(registry: string, scopes: string[]): string[] {
    const extra = this.expected.get(registry);
    if (!extra || this.narrow.has(tokenKey(registry, scopes))) return scopes;
    const wide = mergeScopes([...scopes, ...extra]);
    return tokenKey(registry, wide) === tokenKey(registry, scopes) ? scopes : wide;
  }

  /**
   * After a refusal (401 or 403) of a request sent with a widened token: true, and its scopes are
   * asked for alone from now on (a registry or token server may treat a wide request otherwise),
   * so a retry with a token for the request's own scopes may succeed.
   */
  refused(registry: string, scopes: string[], sent: string | undefined): boolean {
    if (!sent?.startsWith('Bearer ') || this.widen(registry, scopes) === scopes) return false;
    this.narrow.add(tokenKey(registry, scopes));
    return true;
  }

  /** The Authorization header for a request, or undefined while the registry has not asked for one. */
  async header(registry: string, scopes: string[]): Promise<string | undefined> {
    const challenge = this.challenges.get(registry);
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') {
      const creds = await this.credentials.get(registry);
      if (!creds || creds.username === undefined || creds.password === undefined) throw noCredentials(registry);
      return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    }
    const wide = this.widen(registry, scopes);
    let token: Token;
    try {
      token = await this.token(registry, challenge, wide);
    } catch (err) {
      if (wide === scopes) throw err;
      this.narrow.add(tokenKey(registry, scopes));
      token = await this.token(registry, challenge, scopes);
    }
    return `Bearer ${token.value}`;
  }

  /**
   * Called on a 401. Returns true when a retry may succeed (a new or changed challenge, or a
   * bearer token that the registry stopped accepting); false when the same credentials were
   * just refused.
   */
  async learn(registry: string, scopes: string[], res: HttpResponse, sent: string | undefined): Promise<boolean> {
    const challenge = res.headerAll('www-authenticate').map(parseChallenge).find((c) => c !== undefined);
    if (!challenge) return false;
    const known = this.challenges.get(registry);
    const same = known && known.scheme === challenge.scheme && known.realm === challenge.realm && known.service === challenge.service;
    if (!same) {
      this.challenges.set(registry, challenge);
      return true;
    }
    // Sent before a concurrent request learned the challenge: now the header can be built.
    if (sent === undefined) return true;
    if (challenge.scheme === 'bearer' && sent.startsWith('Bearer ')) {
      if (this.refused(registry, scopes, sent)) return true;
      // The token may have lapsed early or been revoked: drop it (unless already replaced) and fetch another.
      const key = tokenKey(registry, scopes);
      const cached = this.tokens.get(key);
      if (cached) {
        const t = await cached.catch(() => undefined);
        if ((t === undefined || `Bearer ${t.value}` === sent) && this.tokens.get(key) === cached) this.tokens.delete(key);
      }
      return true;
    }
    return false;
  }

  /** The one-line error for a request the registry still refuses. */
  async failure(registry: string, res: HttpResponse, what: string, scopes: string[] = []): Promise<KocacheError> {
    const body = await readText(res).catch(() => '');
    const detail = describeRegistryErrors(parseRegistryErrors(body), body);
    const challenge = this.challenges.get(registry);
    const creds = await this.credentials.get(registry).catch(() => undefined);
    const refusal = res.headerAll('www-authenticate').map(parseChallenge).find((c) => c !== undefined);
    let why: string;
    if (creds && refusal?.error === 'insufficient_scope') {
      why = `${describe(creds)} may not ${scopes.map((s) => s.replace(/^repository:/, '')).join(' and ') || 'access'} (${what})`;
    } else if (res.status === 403) {
      why = `access to ${what} denied${creds ? ` for ${describe(creds)}` : ''}`;
    } else if (!creds && challenge) {
      why = `${what} needs credentials and none are configured for ${registry} (docker login ${registry}, or set DOCKER_CONFIG)`;
    } else if (creds) {
      why = `the registry rejected ${describe(creds)} for ${what}`;
    } else {
      why = `the registry refused ${what}`;
    }
    return new KocacheError('auth', `authentication to ${registry} failed: ${why}${detail ? ` (${detail})` : ''}`);
  }

  private token(registry: string, challenge: Challenge, scopes: string[]): Promise<Token> {
    const key = tokenKey(registry, scopes);
    const cached = this.tokens.get(key);
    if (cached) {
      return cached.then((t) => {
        if (t.expires > Date.now()) return t;
        if (this.tokens.get(key) === cached) this.tokens.delete(key);
        return this.token(registry, challenge, scopes);
      });
    }
    const p = this.fetchToken(registry, challenge, scopes);
    this.tokens.set(key, p);
    p.catch(() => { if (this.tokens.get(key) === p) this.tokens.delete(key); });
    return p;
  }

  private async fetchToken(registry: string, challenge: Challenge, scopes: string[]): Promise<Token> {
    const creds = await this.credentials.get(registry);
    if (creds?.registryToken) return { value: creds.registryToken, expires: Number.POSITIVE_INFINITY };
    if (!challenge.realm) throw new KocacheError('auth', `authentication to ${registry} failed: its bearer challenge names no token server`);
    let realm: URL;
    try {
      realm = new URL(challenge.realm);
      if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw new Error('scheme');
    } catch {
      throw new KocacheError('auth', `authentication to ${registry} failed: its token server ${JSON.stringify(challenge.realm)} is not an http(s) URL`);
    }
    // The token server is the one the registry's own challenge names (Requester learns challenges
    // only from the registry's origin), so it gets the user's credentials even on another origin,
    // as with docker (Docker Hub's is auth.docker.io); only in the token request, and never in
    // clear text unless plain HTTP to that host was asked for. Nothing else is sent there.
    if (realm.protocol === 'http:' && (creds?.identityToken || creds?.username !== undefined) && !this.transport.plainHttp(realm.host)) {
      throw new KocacheError('auth', `authentication to ${registry} failed: its token server ${realm.origin} is plain HTTP and kocache does not send credentials in clear text (list ${realm.host} in KOCACHE_INSECURE_REGISTRIES if that is intended)`);
    }
    const headers: Record<string, string> = {};
    let credentials: Credential | undefined;
    let res: HttpResponse;
    try {
      if (creds?.identityToken) {
        // An identity token is an OAuth2 refresh token: only the POST form accepts it.
        const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'kocache' });
        if (challenge.service) form.set('service', challenge.service);
        if (scopes.length > 0) form.set('scope', scopes.join(' '));
        headers['content-type'] = 'application/x-www-form-urlencoded';
        res = await this.transport.send({ method: 'POST', url: realm.href, headers, body: Buffer.from(form.toString()) });
      } else {
        const url = new URL(realm.href);
        if (challenge.service) url.searchParams.set('service', challenge.service);
        for (const s of scopes) url.searchParams.append('scope', s);
        if (creds?.username !== undefined && creds.password !== undefined) {
          credentials = { origin: realm.origin, authorization: `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}` };
        }
        res = await this.transport.send({ method: 'GET', url: url.href, headers, credentials });
      }
    } catch (err) {
      throw networkError(`${realm.host} (token server of ${registry})`, err);
    }
    if (res.status !== 200) {
      const body = await readText(res).catch(() => '');
      const detail = describeRegistryErrors(parseRegistryErrors(body), body);
      const who = creds ? ` with ${describe(creds)}` : ' anonymously';
      throw new KocacheError('auth', `authentication to ${registry} failed: token server ${realm.origin}${realm.pathname} answered ${res.status}${who}${detail ? ` (${detail.slice(0, 200)})` : ''}`);
    }
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(await readText(res)) as typeof parsed;
    } catch {
      await discard(res);
      throw new KocacheError('auth', `authentication to ${registry} failed: token server ${realm.origin} sent something that is not JSON`);
    }
    const value = typeof parsed.token === 'string' && parsed.token ? parsed.token : typeof parsed.access_token === 'string' ? parsed.access_token : '';
    if (!value) throw new KocacheError('auth', `authentication to ${registry} failed: token server ${realm.origin} sent no token`);
    // The token spec's default lifetime is 60 s; stop reusing a token a little before it lapses.
    const lifetime = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : 60;
    const margin = Math.min(10, lifetime / 4);
    return { value, expires: Date.now() + (lifetime - margin) * 1000 };
  }
}

/** Scopes with each repository named once, its actions merged (`pull` and `pull,push`: `pull,push`). */
export function mergeScopes(scopes: string[]): string[] {
  const repos = new Map<string, Set<string>>();
  const other: string[] = [];
  for (const s of scopes) {
    const m = /^repository:(.+):([a-z*,]+)$/.exec(s);
    if (!m) {
      if (!other.includes(s)) other.push(s);
      continue;
    }
    const actions = repos.get(m[1]!) ?? new Set<string>();
    for (const a of m[2]!.split(',')) if (a) actions.add(a);
    repos.set(m[1]!, actions);
  }
  return [...[...repos].map(([name, actions]) => `repository:${name}:${[...actions].sort().join(',')}`), ...other];
}

function tokenKey(registry: string, scopes: string[]): string {
  return `${registry} ${[...scopes].sort().join(' ')}`;
}

function describe(c: Credentials): string {
  if (c.registryToken) return `the registry token from ${c.source}`;
  if (c.identityToken) return `the identity token from ${c.source}`;
  return `the credentials of user ${JSON.stringify(c.username ?? '')} from ${c.source}`;
}

function noCredentials(registry: string): KocacheError {
  return new KocacheError('auth', `authentication to ${registry} failed: it asks for a user name and password and none are configured (docker login ${registry}, or set DOCKER_CONFIG)`);
}
