import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { isOneLineError, runCli } from './helpers/cli.js';
import { type FaultProxy, startFaultProxy } from './helpers/fault-proxy.js';
import { htpasswdConfig, writeHtpasswd } from './helpers/htpasswd.js';
import { type RunningRegistry, skopeoPath, startRegistry } from './helpers/registry.js';
import { type TokenIssuer, startTokenIssuer } from './helpers/token-issuer.js';

// Credentials belong to one origin (scheme://host:port). A registry, or something posing as one,
// can send kocache elsewhere: an upload Location on another host:port, a redirect. Those requests
// must go without the registry's Authorization; the fake hosts here record what they received.

const b64 = (s: string) => Buffer.from(s).toString('base64');

function dockerConfig(root: string, name: string, auths: Record<string, string>): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ auths: Object.fromEntries(Object.entries(auths).map(([host, auth]) => [host, { auth }])) }));
  return dir;
}

/** A tree for one layer: 17 MiB of random bytes, so its upload goes in PATCH chunks (the config goes in one PUT). */
function bigTree(root: string): string {
  const src = join(root, `src-${randomBytes(4).toString('hex')}`);
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'blob.bin'), randomBytes(17 << 20));
  writeFileSync(join(src, 'small.txt'), 'hello\n');
  return src;
}

/** An upload Location on the registry, moved to `host` (path and session state kept). */
const moveTo = (host: string) => (location: string): string => {
  const u = new URL(location, 'http://registry.invalid');
  return `http://${host}${u.pathname}${u.search}`;
};

const sent = (p: FaultProxy, method?: string) => p.seen.filter((r) => method === undefined || r.method === method);

describe('Basic credentials stay with the registry', () => {
  let root: string;
  let reg: RunningRegistry;
  const proxies: FaultProxy[] = [];
  const PASSWORD = 'origin-secret-9';
  const basic = `Basic ${b64(`alice:${PASSWORD}`)}`;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'kocache-origins-'));
    writeHtpasswd(join(root, 'htpasswd'), { alice: PASSWORD });
    reg = await startRegistry({ extraConfig: htpasswdConfig(join(root, 'htpasswd')) });
  });
  after(async () => {
    for (const p of proxies) await p.stop();
    await reg.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('an upload Location on another host:port gets the PUT and PATCHes without Authorization; a blob read redirected there too', async () => {
    // The other host reaches the registry with credentials of its own, as a storage URL carries its authority.
    const storage = await startFaultProxy(reg.port, [], { upstreamHeaders: { authorization: basic } });
    const front = await startFaultProxy(reg.port, [
      { method: 'POST', path: /\/blobs\/uploads\/$/, times: 99, rewriteLocation: moveTo(storage.host) },
      { method: 'GET', path: /\/blobs\/sha256:/, times: 99, redirectTo: (p) => `http://${storage.host}${p}` },
    ]);
    proxies.push(storage, front);
    const env = { KOCACHE: join(root, 'cache-1'), DOCKER_CONFIG: dockerConfig(root, 'cfg-1', { [front.host]: b64(`alice:${PASSWORD}`) }) };
    const r = await runCli(['publish', `${bigTree(root)}:/app`, '--base', 'scratch', '--repo', `${front.host}/private/app:v1`, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(sent(storage, 'PATCH').length >= 3 && sent(storage, 'PUT').length >= 2, `the uploads went to the other host: ${JSON.stringify(storage.seen)}`);
    assert.deepEqual(storage.seen.filter((s) => s.authorization), [], 'the other host never got an Authorization header');
    assert.ok(sent(front, 'POST').every((s) => s.authorization), 'the registry itself got the credentials');
    const { stdout: raw } = await promisify(execFile)(skopeoPath(), ['inspect', '--raw', '--tls-verify=false', '--creds', `alice:${PASSWORD}`, `docker://${reg.host}/private/app:v1`], { encoding: 'utf8' });
    assert.equal((JSON.parse(raw) as { layers: unknown[] }).layers.length, 1);

    // A base image whose blobs the registry redirects to the other host: fetched from there, without credentials.
    const before = storage.seen.length;
    const w = await runCli(['warm', `${front.host}/private/app:v1`, '--json'], { ...env, KOCACHE: join(root, 'cache-2') });
    assert.equal(w.code, 0, w.stderr);
    const reads = storage.seen.slice(before);
    assert.ok(reads.length >= 2 && reads.every((s) => s.method === 'GET' && !s.authorization), JSON.stringify(reads));
  });

  test('another host that answers 401 is refused in one line, never sent the credentials, its challenge never learned', async () => {
    const elsewhere = await startFaultProxy(reg.port, []);
    const front = await startFaultProxy(reg.port, [{ method: 'POST', path: /\/blobs\/uploads\/$/, times: 99, rewriteLocation: moveTo(elsewhere.host) }]);
    proxies.push(elsewhere, front);
    const env = { KOCACHE: join(root, 'cache-3'), DOCKER_CONFIG: dockerConfig(root, 'cfg-3', { [front.host]: b64(`alice:${PASSWORD}`) }) };
    const src = join(root, 'small');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'a.txt'), 'a\n');
    const r = await runCli(['publish', `${src}:/app`, '--base', 'scratch', '--repo', `${front.host}/private/small:v1`], env);
    assert.ok(isOneLineError(r, { warnings: true }), `one line, got ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${elsewhere.host}.*answered 401.*only to ${front.host}`));
    assert.ok(!r.stderr.includes(PASSWORD) && !r.stderr.includes(b64(`alice:${PASSWORD}`)));
    assert.ok(sent(elsewhere).length >= 1, 'the upload was sent there');
    assert.deepEqual(elsewhere.seen.filter((s) => s.authorization), [], 'without credentials, on every try');
  });
});

describe('Bearer tokens stay with the registry; the token server gets only token requests', () => {
  let root: string;
  let reg: RunningRegistry;
  let issuer: TokenIssuer;
  const proxies: FaultProxy[] = [];
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'kocache-origins-bearer-'));
    issuer = await startTokenIssuer(root, { users: { bob: 'bearer-pw-5' } });
    reg = await startRegistry({ extraConfig: issuer.registryConfig });
  });
  after(async () => {
    for (const p of proxies) await p.stop();
    await reg.stop();
    await issuer.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('uploads sent to another host carry no token; the token server (another origin) gets the user\'s credentials in the token request only', async () => {
    // The other host's own token, fetched by the test.
    const res = await fetch(`${issuer.realm}?service=${issuer.service}&scope=repository:team/app:pull,push`, { headers: { authorization: `Basic ${b64('bob:bearer-pw-5')}` } });
    const { token } = (await res.json()) as { token: string };
    const storage = await startFaultProxy(reg.port, [], { upstreamHeaders: { authorization: `Bearer ${token}` } });
    const front = await startFaultProxy(reg.port, [{ method: 'POST', path: /\/blobs\/uploads\/$/, times: 99, rewriteLocation: moveTo(storage.host) }]);
    proxies.push(storage, front);
    const before = issuer.requests.length;
    const env = { KOCACHE: join(root, 'cache'), DOCKER_CONFIG: dockerConfig(root, 'cfg', { [front.host]: b64('bob:bearer-pw-5') }) };
    const r = await runCli(['publish', `${bigTree(root)}:/app`, '--base', 'scratch', '--repo', `${front.host}/team/app:v1`], env);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(sent(storage, 'PATCH').length >= 3, JSON.stringify(storage.seen));
    assert.deepEqual(storage.seen.filter((s) => s.authorization), [], 'the other host never got the token');
    assert.ok(sent(front).some((s) => s.authorization), 'the registry did');
    const asked = issuer.requests.slice(before);
    assert.ok(asked.length >= 1);
    for (const q of asked) {
      assert.equal(q.path, '/token', 'nothing but token requests reached the token server');
      assert.equal(q.bearer, false, 'and never with a registry token');
      assert.equal(q.user, 'bob', 'the user\'s credentials went to the token server the registry named');
    }
  });

  test('a token server on plain HTTP elsewhere is not sent credentials: one line', async () => {
    // Never contacted: 192.0.2.1 is a documentation address, and kocache refuses before connecting.
    const cleartext = await startRegistry({ extraConfig: issuer.registryConfig.replace(issuer.realm, 'http://192.0.2.1/token') });
    try {
      const env = { KOCACHE: join(root, 'cache-clear'), DOCKER_CONFIG: dockerConfig(root, 'cfg-clear', { [cleartext.host]: b64('bob:bearer-pw-5') }) };
      const r = await runCli(['warm', `${cleartext.host}/team/app:v1`, '--connect-timeout', '2'], env);
      assert.ok(isOneLineError(r, { warnings: true }), `one line, got ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, /token server http:\/\/192\.0\.2\.1 is plain HTTP/);
    } finally {
      await cleartext.stop();
    }
  });
});
