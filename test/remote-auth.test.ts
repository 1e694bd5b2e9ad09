import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KocacheError } from '../src/errors.js';
import { parseReference } from '../src/reference/reference.js';
import { RegistryClient } from '../src/remote/client.js';
import { pushImage } from '../src/remote/push.js';
import { createServer } from 'node:http';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { htpasswdConfig, writeHtpasswd } from './helpers/htpasswd.js';
import { randomImage } from './helpers/images.js';
import { type RunningRegistry, skopeoPath, startRegistry } from './helpers/registry.js';
import { type TokenIssuer, startTokenIssuer } from './helpers/token-issuer.js';

/** A throwaway DOCKER_CONFIG directory holding the given config.json. */
function dockerConfig(root: string, name: string, config: object): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of source) parts.push(c);
  return Buffer.concat(parts);
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** Asserts a one-line KocacheError matching `re` that does not leak `secrets`. */
async function rejectsOneLine(p: Promise<unknown>, re: RegExp, secrets: string[]): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof KocacheError, `a KocacheError, got ${String(err)}`);
    assert.match(err.message, re);
    assert.ok(!err.message.includes('\n'), 'one line');
    for (const s of secrets) assert.ok(!err.message.includes(s), 'no secret in the message');
    return true;
  });
}

describe('Basic auth (htpasswd)', () => {
  let root: string;
  let reg: RunningRegistry;
  const PASSWORD = 'correct-horse-7';
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'kocache-basic-'));
    const htpasswd = join(root, 'htpasswd');
    writeHtpasswd(htpasswd, { alice: PASSWORD });
    reg = await startRegistry({ extraConfig: htpasswdConfig(htpasswd) });
  });
  after(async () => {
    await reg.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('credentials from config.json (auth entry keyed with a scheme) push an image skopeo reads back', async () => {
    const dir = dockerConfig(root, 'good', { auths: { [`http://${reg.host}/v2/`]: { auth: b64(`alice:${PASSWORD}`) } } });
    const client = new RegistryClient({ dockerConfigDir: dir });
    try {
      const image = randomImage([20_000, 3_000]);
      const result = await pushImage(client, parseReference(`${reg.host}/private/app:v1`), image);
      assert.equal(result.uploaded, 3);
      const raw = execFileSync(skopeoPath(), ['inspect', '--raw', '--tls-verify=false', '--creds', `alice:${PASSWORD}`, `docker://${reg.host}/private/app:v1`], { encoding: 'utf8' });
      assert.equal(raw, image.bytes.toString('utf8'));
      assert.deepEqual((await client.getManifest(parseReference(`${reg.host}/private/app:v1`))).bytes, image.bytes);
    } finally {
      await client.close();
    }
  });

  test('username/password fields and a credential helper work too', async () => {
    const fields = dockerConfig(root, 'fields', { auths: { [reg.host]: { username: 'alice', password: PASSWORD } } });
    const bin = join(root, 'bin');
    mkdirSync(bin, { recursive: true });
    const helper = join(bin, 'docker-credential-kotest');
    // The helper answers only for the server it is asked about, like real ones do.
    writeFileSync(helper, `#!/bin/sh\nread server\nif [ "$1" = get ] && [ "$server" = "${reg.host}" ]; then printf '{"ServerURL":"%s","Username":"alice","Secret":"${PASSWORD}"}' "$server"; else echo "credentials not found in native keychain"; exit 1; fi\n`);
    chmodSync(helper, 0o755);
    const helped = dockerConfig(root, 'helper', { credHelpers: { [reg.host]: 'kotest' }, auths: { [reg.host]: { auth: b64('alice:wrong') } } });
    const oldPath = process.env.PATH;
    process.env.PATH = `${bin}${delimiter}${oldPath ?? ''}`;
    try {
      for (const dir of [fields, helped]) {
        const client = new RegistryClient({ dockerConfigDir: dir });
        try {
          const d = await client.resolve(parseReference(`${reg.host}/private/app:v1`));
          assert.ok(d, `resolved with ${dir}`);
        } finally {
          await client.close();
        }
      }
    } finally {
      process.env.PATH = oldPath;
    }
  });

  test('a wrong password is one line naming the registry and the user, without the password', async () => {
    const dir = dockerConfig(root, 'bad', { auths: { [reg.host]: { auth: b64('alice:not-the-password') } } });
    const client = new RegistryClient({ dockerConfigDir: dir });
    try {
      await rejectsOneLine(
        client.getManifest(parseReference(`${reg.host}/private/app:v1`)),
        new RegExp(`^authentication to ${reg.host.replace(/\./g, '\\.')} failed: the registry rejected the credentials of user "alice" from .*config\\.json`),
        ['not-the-password', b64('alice:not-the-password')],
      );
    } finally {
      await client.close();
    }
  });

  test('a blob read redirected to a storage host follows the redirect without sending the credentials there', async () => {
    const dir = dockerConfig(root, 'redirect', { auths: { [reg.host]: { auth: b64(`alice:${PASSWORD}`) } } });
    const client = new RegistryClient({ dockerConfigDir: dir });
    const image = randomImage([50_000]);
    const layer = image.layers[0]!;
    await pushImage(client, parseReference(`${reg.host}/private/redirected:v1`), image);
    // The "storage host": another origin serving the blob's bytes, noting what headers it got.
    const storageAuth: (string | undefined)[] = [];
    const bytes = await collect(layer.open());
    const storage = createServer((req, res) => {
      storageAuth.push(req.headers.authorization);
      res.writeHead(200, { 'content-length': String(bytes.length) });
      res.end(bytes);
    });
    await new Promise<void>((resolve) => storage.listen(0, '127.0.0.1', resolve));
    const addr = storage.address();
    const storagePort = typeof addr === 'object' && addr ? addr.port : 0;
    const proxy = await startFaultProxy(reg.port, [
      { method: 'GET', path: /\/blobs\/sha256:/, times: 99, redirectTo: (p) => `http://localhost:${storagePort}/storage${p}?signature=abc` },
    ]);
    const viaProxy = new RegistryClient({ dockerConfigDir: dockerConfig(root, 'redirect-proxy', { auths: { [proxy.host]: { auth: b64(`alice:${PASSWORD}`) } } }) });
    try {
      assert.ok(await viaProxy.resolve(parseReference(`${proxy.host}/private/redirected:v1`)), 'authenticated through the proxy');
      const got = await collect(viaProxy.getBlob(parseReference(`${proxy.host}/private/redirected`), layer.descriptor));
      assert.deepEqual(got, bytes);
      assert.deepEqual(proxy.injected, [`GET /v2/private/redirected/blobs/${layer.descriptor.digest} -> 307`]);
      assert.equal(proxy.seen.find((r) => r.path.includes('/blobs/'))?.authorization, true, 'the registry got the credentials');
      assert.deepEqual(storageAuth, [undefined], 'the storage host did not');
    } finally {
      await viaProxy.close();
      await client.close();
      await proxy.stop();
      storage.closeAllConnections();
      await new Promise((resolve) => storage.close(resolve));
    }
  });

  test('no credentials at all says so', async () => {
    const client = new RegistryClient({ dockerConfigDir: join(root, 'none') });
    try {
      await rejectsOneLine(client.resolve(parseReference(`${reg.host}/private/app:v1`)), /^authentication to .* failed: .*none are configured/, []);
    } finally {
      await client.close();
    }
  });
});

describe('Bearer tokens (token server beside the registry)', () => {
  let root: string;
  let reg: RunningRegistry;
  let issuer: TokenIssuer;
  const denied = new Set<string>();
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'kocache-bearer-'));
    issuer = await startTokenIssuer(root, {
      users: { bob: 'hunter2-pw' },
      refreshTokens: { 'refresh-abc-123': 'bob' },
      grant: (user, repo, asked) => (user && !denied.has(repo) ? asked : []),
    });
    reg = await startRegistry({ extraConfig: issuer.registryConfig });
  });
  after(async () => {
    await reg.stop();
    await issuer.stop();
    rmSync(root, { recursive: true, force: true });
  });

  /** The one line a pull of `repository:v1` that bob may not make ends in, without his password. */
  const refusesPull = (client: RegistryClient, repository: string) => rejectsOneLine(
    client.getManifest(parseReference(`${reg.host}/${repository}:v1`)),
    new RegExp(`^authentication to 127\\.0\\.0\\.1:\\d+ failed: the credentials of user "bob" from .*config\\.json may not ${repository}:pull `),
    ['hunter2-pw'],
  );

  test('a push fetches one push-scoped token and reuses it; skopeo reads the image back', async () => {
    const dir = dockerConfig(root, 'pw', { auths: { [reg.host]: { auth: b64('bob:hunter2-pw') } } });
    const client = new RegistryClient({ dockerConfigDir: dir });
    try {
      const before = issuer.requests.length;
      const image = randomImage([10_000, 20_000, 30_000]);
      const result = await pushImage(client, parseReference(`${reg.host}/team/app:v1`), image);
      assert.equal(result.uploaded, 4);
      const asked = issuer.requests.slice(before);
      assert.equal(asked.length, 1, `one token for the whole push, got ${JSON.stringify(asked)}`);
      assert.deepEqual(asked[0]?.scopes, ['repository:team/app:pull,push']);
      assert.equal(asked[0]?.service, issuer.service);
      assert.equal(asked[0]?.user, 'bob');
      // Not execFileSync: skopeo asks the token server, which runs in this process.
      const { stdout: raw } = await promisify(execFile)(skopeoPath(), ['inspect', '--raw', '--tls-verify=false', '--creds', 'bob:hunter2-pw', `docker://${reg.host}/team/app:v1`], { encoding: 'utf8' });
      assert.equal(raw, image.bytes.toString('utf8'));

      // A mount asks for pull on the origin as well, in the same token.
      const mounted = await pushImage(client, parseReference(`${reg.host}/team/other:v1`), image);
      assert.equal(mounted.mounted, 4);
      assert.ok(issuer.requests.some((r) => r.scopes.includes('repository:team/app:pull') && r.scopes.includes('repository:team/other:pull,push')));
    } finally {
      await client.close();
    }
  });

  test('scopes expected up front: one token serves the command and a client shared from it; a grant short of them falls back per request', async () => {
    const dir = dockerConfig(root, 'expect', { auths: { [reg.host]: { auth: b64('bob:hunter2-pw') } } });
    const seed = new RegistryClient({ dockerConfigDir: dir });
    const image = randomImage([9_000, 11_000]);
    await pushImage(seed, parseReference(`${reg.host}/exp/cache:v1`), image);
    await seed.close();
    const client = new RegistryClient({ dockerConfigDir: dir });
    const cacheSide = client.share({ retry: { tries: 2, baseDelayMs: 10 } });
    try {
      client.expect({ push: [{ registry: reg.host, repository: 'exp/app' }], pull: [{ registry: reg.host, repository: 'exp/cache' }, { registry: reg.host, repository: 'exp/app' }] });
      const before = issuer.requests.length;
      assert.equal(await client.resolve(parseReference(`${reg.host}/exp/app:v1`)), undefined);
      const got = await cacheSide.getManifest(parseReference(`${reg.host}/exp/cache:v1`));
      assert.equal(got.descriptor.digest, image.descriptor.digest);
      assert.equal(await client.mountBlob({ registry: reg.host, repository: 'exp/app' }, image.layers[0]!.descriptor.digest, 'exp/cache'), true);
      await pushImage(client, parseReference(`${reg.host}/exp/app:v1`), image);
      const asked = issuer.requests.slice(before);
      assert.deepEqual(asked.map((r) => r.scopes), [['repository:exp/app:pull,push', 'repository:exp/cache:pull']], 'one token, asked for every expected scope at once');
      const { stdout: raw } = await promisify(execFile)(skopeoPath(), ['inspect', '--raw', '--tls-verify=false', '--creds', 'bob:hunter2-pw', `docker://${reg.host}/exp/app:v1`], { encoding: 'utf8' });
      assert.equal(raw, image.bytes.toString('utf8'));

      // The token server grants nothing on one expected repository: requests elsewhere still
      // work with the wide token, and a request there ends as it would without expectations.
      denied.add('exp/locked');
      const narrow = new RegistryClient({ dockerConfigDir: dir });
      try {
        narrow.expect({ push: [{ registry: reg.host, repository: 'exp/app2' }], pull: [{ registry: reg.host, repository: 'exp/locked' }] });
        await pushImage(narrow, parseReference(`${reg.host}/exp/app2:v1`), image);
        await refusesPull(narrow, 'exp/locked');
      } finally {
        denied.delete('exp/locked');
        await narrow.close();
      }
    } finally {
      await cacheSide.close();
      await client.close();
    }
  });

  test('an identity token (refresh token) goes through the OAuth POST form', async () => {
    const dir = dockerConfig(root, 'identity', { auths: { [reg.host]: { auth: b64('bob:'), identitytoken: 'refresh-abc-123' } } });
    const client = new RegistryClient({ dockerConfigDir: dir });
    try {
      const before = issuer.requests.length;
      assert.ok(await client.resolve(parseReference(`${reg.host}/team/app:v1`)));
      const asked = issuer.requests.slice(before);
      assert.equal(asked[0]?.method, 'POST');
      assert.equal(asked[0]?.grantType, 'refresh_token');
    } finally {
      await client.close();
    }
  });

  test('a mount the user may not read from falls back to an upload', async () => {
    const dir = dockerConfig(root, 'pw2', { auths: { [reg.host]: { username: 'bob', password: 'hunter2-pw' } } });
    const client = new RegistryClient({ dockerConfigDir: dir });
    try {
      const image = randomImage([8_000]);
      await pushImage(client, parseReference(`${reg.host}/locked/src:v1`), image);
      denied.add('locked/src');
      const result = await pushImage(client, parseReference(`${reg.host}/open/dst:v1`), image);
      assert.deepEqual([result.uploaded, result.mounted], [2, 0]);
    } finally {
      denied.delete('locked/src');
      await client.close();
    }
  });

  test('a wrong password is refused by the token server: one line, no password', async () => {
    const dir = dockerConfig(root, 'wrong', { auths: { [reg.host]: { auth: b64('bob:wrong-pw-99') } } });
    const client = new RegistryClient({ dockerConfigDir: dir });
    try {
      await rejectsOneLine(
        client.getManifest(parseReference(`${reg.host}/team/app:v1`)),
        /^authentication to 127\.0\.0\.1:\d+ failed: token server http:\/\/127\.0\.0\.1:\d+\/token answered 401 with the credentials of user "bob"/,
        ['wrong-pw-99', b64('bob:wrong-pw-99')],
      );
    } finally {
      await client.close();
    }
  });

  test('credentials that are good but lack the permission: one line saying which action on which repository', async () => {
    const dir = dockerConfig(root, 'scoped', { auths: { [reg.host]: { auth: b64('bob:hunter2-pw') } } });
    const client = new RegistryClient({ dockerConfigDir: dir });
    denied.add('team/app');
    try {
      await refusesPull(client, 'team/app');
    } finally {
      denied.delete('team/app');
      await client.close();
    }
  });

  test('anonymous access the token server does not grant ends in one line', async () => {
    const client = new RegistryClient({ dockerConfigDir: join(root, 'nobody') });
    try {
      await rejectsOneLine(client.getManifest(parseReference(`${reg.host}/team/app:v1`)), /^authentication to 127\.0\.0\.1:\d+ failed: .*needs credentials and none are configured/, []);
    } finally {
      await client.close();
    }
  });
});

describe('Bearer token lifetime', () => {
  let root: string;
  let reg: RunningRegistry;
  let issuer: TokenIssuer;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'kocache-expiry-'));
    issuer = await startTokenIssuer(root, { users: { bob: 'pw' }, expiresIn: 2 });
    reg = await startRegistry({ extraConfig: issuer.registryConfig });
  });
  after(async () => {
    await reg.stop();
    await issuer.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('a token is replaced before it is sent past its expires_in', async () => {
    const client = new RegistryClient({ dockerConfigDir: dockerConfig(root, 'c', { auths: { [reg.host]: { username: 'bob', password: 'pw' } } }) });
    try {
      const ref = parseReference(`${reg.host}/app:v1`);
      assert.equal(await client.resolve(ref), undefined);
      assert.equal(issuer.requests.length, 1);
      // Past the whole 2 s lifetime: the old token must not be sent again.
      await new Promise((r) => setTimeout(r, 2100));
      assert.equal(await client.resolve(ref), undefined);
      assert.equal(issuer.requests.length, 2);
      // 401 + retry for the first resolve, then one HEAD: the fresh token was fetched before sending, not after a refusal.
      assert.equal(reg.requests('HEAD', /^\/v2\/app\/manifests\/v1$/), 3);
    } finally {
      await client.close();
    }
  });
});
