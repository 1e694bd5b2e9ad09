import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KocacheError } from '../../src/errors.js';
import { mergeScopes, parseChallenge, repositoryScope } from '../../src/remote/auth.js';
import { CredentialStore, configKeyToRegistry, helperServerName } from '../../src/remote/credentials.js';

test('WWW-Authenticate challenges: quoted values with commas, unquoted values, case, unknown schemes', () => {
  assert.deepEqual(
    parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push"'),
    { scheme: 'bearer', realm: 'https://auth.docker.io/token', service: 'registry.docker.io' },
  );
  assert.deepEqual(parseChallenge('basic realm=Registry'), { scheme: 'basic', realm: 'Registry' });
  assert.deepEqual(parseChallenge('Bearer realm="a\\"b", service=svc'), { scheme: 'bearer', realm: 'a"b', service: 'svc' });
  assert.equal(parseChallenge('Negotiate abc'), undefined);
  assert.equal(parseChallenge(undefined), undefined);
  assert.equal(repositoryScope('a/b', 'pull,push'), 'repository:a/b:pull,push');
});

test('config.json keys reduce to registry hosts; Docker Hub has one name', () => {
  assert.equal(configKeyToRegistry('https://index.docker.io/v1/'), 'docker.io');
  assert.equal(configKeyToRegistry('registry-1.docker.io'), 'docker.io');
  assert.equal(configKeyToRegistry('http://127.0.0.1:5000/v2/'), '127.0.0.1:5000');
  assert.equal(configKeyToRegistry('GHCR.io'), 'ghcr.io');
  assert.equal(helperServerName('docker.io'), 'https://index.docker.io/v1/');
  assert.equal(helperServerName('ghcr.io'), 'ghcr.io');
});

describe('CredentialStore', () => {
  let root: string;
  let oldPath: string | undefined;
  const dir = (name: string, config: unknown) => {
    const d = join(root, name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
    return d;
  };
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'kocache-creds-'));
    const bin = join(root, 'bin');
    mkdirSync(bin);
    // A store that knows Docker Hub (by its historic name) and hands out an identity token for ghcr.io.
    writeFileSync(join(bin, 'docker-credential-kostore'), [
      '#!/bin/sh',
      'read server',
      'case "$server" in',
      '  https://index.docker.io/v1/) echo \'{"Username":"hubuser","Secret":"hub-secret"}\' ;;',
      '  ghcr.io) echo \'{"Username":"<token>","Secret":"refresh-xyz"}\' ;;',
      '  broken.example) echo "something went wrong: password=leaked"; exit 3 ;;',
      '  hang.example) exec sleep 30 ;;',
      '  *) echo "credentials not found in native keychain"; exit 1 ;;',
      'esac',
      '',
    ].join('\n'));
    chmodSync(join(bin, 'docker-credential-kostore'), 0o755);
    oldPath = process.env.PATH;
    process.env.PATH = `${bin}${delimiter}${oldPath ?? ''}`;
  });
  after(() => {
    process.env.PATH = oldPath;
    rmSync(root, { recursive: true, force: true });
  });

  test('auths: base64 auth under the Docker Hub v1 key, identity tokens, registry tokens', async () => {
    const store = new CredentialStore(dir('auths', {
      auths: {
        'https://index.docker.io/v1/': { auth: Buffer.from('hub:pa:ss').toString('base64') },
        'quay.io': { auth: Buffer.from('robot:').toString('base64'), identitytoken: 'id-tok' },
        'https://reg.example/': { registrytoken: 'reg-tok' },
      },
    }));
    assert.deepEqual(await store.get('docker.io'), { username: 'hub', password: 'pa:ss', source: join(root, 'auths', 'config.json') });
    assert.equal((await store.get('quay.io'))?.identityToken, 'id-tok');
    assert.equal((await store.get('reg.example'))?.registryToken, 'reg-tok');
    assert.equal(await store.get('ghcr.io'), undefined);
  });

  test('credsStore answers first; "credentials not found" falls back to auths; <token> means identity token', async () => {
    const store = new CredentialStore(dir('store', {
      credsStore: 'kostore',
      auths: { 'other.example': { username: 'u', password: 'p' } },
    }));
    assert.deepEqual(await store.get('index.docker.io'), { username: 'hubuser', password: 'hub-secret', source: 'docker-credential-kostore' });
    assert.deepEqual(await store.get('ghcr.io'), { identityToken: 'refresh-xyz', source: 'docker-credential-kostore' });
    assert.equal((await store.get('other.example'))?.username, 'u');
  });

  test('a helper that never answers is stopped after the registry timeout: one line', async () => {
    const hanging = new CredentialStore(dir('hanging', { credHelpers: { 'hang.example': 'kostore' } }), () => {}, 300);
    await assert.rejects(hanging.get('hang.example'), (err: unknown) => {
      assert.ok(err instanceof KocacheError);
      assert.equal(err.message, 'credential helper docker-credential-kostore gave no answer for hang.example in 0.3 s (the registry timeout); stopped it');
      return true;
    });
  });

  test('a failing helper is one line that does not echo its output; a missing one warns and falls back', async () => {
    const failing = new CredentialStore(dir('failing', { credHelpers: { 'broken.example': 'kostore' } }));
    await assert.rejects(failing.get('broken.example'), (err: unknown) => {
      assert.ok(err instanceof KocacheError);
      assert.equal(err.message, 'credential helper docker-credential-kostore failed for broken.example (exit code 3)');
      return true;
    });
    const warnings: string[] = [];
    const missing = new CredentialStore(dir('missing', { credsStore: 'nonexistent-helper', auths: { 'a.example': { username: 'x', password: 'y' } } }), (m) => warnings.push(m));
    assert.equal((await missing.get('a.example'))?.password, 'y');
    assert.match(warnings[0] ?? '', /docker-credential-nonexistent-helper .* not on PATH/);
  });

  test('a config.json that is not JSON: one line that quotes none of it', async () => {
    const store = new CredentialStore(dir('garbage', '{"auths": {"x": {"auth": "c2VjcmV0"}'));
    await assert.rejects(store.get('x'), (err: unknown) => {
      assert.ok(err instanceof KocacheError);
      assert.match(err.message, /config\.json: not valid JSON$/);
      assert.ok(!err.message.includes('c2VjcmV0'));
      return true;
    });
  });

  test('no config.json: no credentials, no error', async () => {
    assert.equal(await new CredentialStore(join(root, 'absent')).get('docker.io'), undefined);
  });
});

test('mergeScopes names each repository once with the union of its actions, other scopes as they are', () => {
  assert.deepEqual(
    mergeScopes(['repository:team/app:pull', 'repository:team/cache:pull', 'repository:team/app:push,pull', 'registry:catalog:*', 'repository:team/app:pull', 'registry:catalog:*']),
    ['repository:team/app:pull,push', 'repository:team/cache:pull', 'registry:catalog:*'],
  );
  assert.deepEqual(mergeScopes([repositoryScope('a/b', 'delete'), repositoryScope('a/b', 'pull')]), ['repository:a/b:delete,pull']);
  assert.deepEqual(mergeScopes([]), []);
});
