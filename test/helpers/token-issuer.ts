import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomBytes, sign, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';

/** What one token request asked for, as the issuer saw it (secrets left out). */
export interface TokenRequest {
  method: string;
  /** The request's path (the realm's is /token): anything else reaching the issuer was sent astray. */
  path: string;
  /** Whether it carried an Authorization header of another kind than Basic (a registry token, misdirected). */
  bearer: boolean;
  user?: string;
  service?: string;
  scopes: string[];
  grantType?: string;
}

export interface TokenIssuer {
  realm: string;
  service: string;
  issuer: string;
  /** The `auth: token:` section for the registry's config. */
  registryConfig: string;
  requests: TokenRequest[];
  stop(): Promise<void>;
}

export interface IssuerOptions {
  /** user -> password; a request with wrong credentials gets 401. */
  users: Record<string, string>;
  /** Refresh tokens accepted by the OAuth POST form, mapped to the user they stand for. */
  refreshTokens?: Record<string, string>;
  /** Which actions a user (undefined = anonymous) gets on a repository; default: all asked for when authenticated, none anonymously. */
  grant?: (user: string | undefined, repository: string, asked: string[]) => string[];
  /** Token lifetime in seconds (the registry rejects expired tokens). */
  expiresIn?: number;
}

const SERVICE = 'kocache-test-registry';
const ISSUER = 'kocache-test-issuer';

/**
 * A token server for distribution's `auth: token` mode: it signs RS256 JWTs with a key whose
 * self-signed certificate is the registry's rootcertbundle, and puts that certificate in the
 * JWT's x5c header so the registry can verify the signature against the bundle.
 */
export async function startTokenIssuer(dir: string, opts: IssuerOptions): Promise<TokenIssuer> {
  const keyPath = join(dir, 'issuer-key.pem');
  const certPath = join(dir, 'issuer-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=kocache-test-issuer'], { stdio: 'ignore' });
  const key = createPrivateKey(readFileSync(keyPath));
  const certDer = new X509Certificate(readFileSync(certPath)).raw.toString('base64');
  const requests: TokenRequest[] = [];

  const issue = (user: string | undefined, service: string | undefined, scopes: string[]) => {
    const access = scopes.flatMap((scope) => {
      const m = /^repository:([^:]+):(.+)$/.exec(scope);
      if (!m) return [];
      const asked = (m[2] ?? '').split(',');
      const actions = opts.grant ? opts.grant(user, m[1] ?? '', asked) : user ? asked : [];
      return actions.length ? [{ type: 'repository', name: m[1] ?? '', actions }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c: [certDer] };
    const claims = {
      iss: ISSUER, sub: user ?? '', aud: service ?? SERVICE,
      exp: now + (opts.expiresIn ?? 300), nbf: now - 10, iat: now,
      jti: randomBytes(12).toString('hex'), access,
    };
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const signingInput = `${b64(header)}.${b64(claims)}`;
    const signature = sign('sha256', Buffer.from(signingInput), key).toString('base64url');
    return `${signingInput}.${signature}`;
  };

  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://issuer');
    const reply = (status: number, body: object) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    let user: string | undefined;
    let service: string | undefined;
    let scopes: string[];
    const seen: TokenRequest = { method: req.method ?? '', path: url.pathname, bearer: /^Bearer /i.test(req.headers.authorization ?? ''), scopes: [] };
    if (req.method === 'POST') {
      const form = new URLSearchParams(await readBody(req));
      service = form.get('service') ?? undefined;
      scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
      seen.grantType = form.get('grant_type') ?? '';
      const refresh = form.get('refresh_token') ?? '';
      user = opts.refreshTokens?.[refresh];
      if (!user) {
        Object.assign(seen, { service, scopes });
        requests.push(seen);
        return reply(401, { errors: [{ code: 'UNAUTHORIZED', message: 'invalid refresh token' }] });
      }
    } else {
      service = url.searchParams.get('service') ?? undefined;
      scopes = url.searchParams.getAll('scope');
      const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
      if (basic) {
        const [u, ...rest] = Buffer.from(basic[1] ?? '', 'base64').toString('utf8').split(':');
        if (u === undefined || opts.users[u] !== rest.join(':')) {
          Object.assign(seen, { user: u, service, scopes });
          requests.push(seen);
          return reply(401, { errors: [{ code: 'UNAUTHORIZED', message: 'bad user name or password' }] });
        }
        user = u;
      }
    }
    Object.assign(seen, { service, scopes }, user ? { user } : {});
    requests.push(seen);
    const token = issue(user, service, scopes);
    reply(200, { token, access_token: token, expires_in: opts.expiresIn ?? 300, issued_at: new Date().toISOString() });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const realm = `http://127.0.0.1:${port}/token`;
  return {
    realm,
    service: SERVICE,
    issuer: ISSUER,
    registryConfig: ['auth:', '  token:', `    realm: ${realm}`, `    service: ${SERVICE}`, `    issuer: ${ISSUER}`, `    rootcertbundle: ${certPath}`].join('\n'),
    requests,
    stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  let s = '';
  for await (const chunk of req) s += String(chunk);
  return s;
}
