import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { delimiter, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isOneLineError, runCli, tempDir } from './helpers/cli.js';
import { htpasswdConfig, writeHtpasswd } from './helpers/htpasswd.js';
import { appTree, skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, nonLoopbackAddress, startRegistry } from './helpers/registry.js';

// Every registry that matters is HTTPS. This one is the real registry serving TLS on an address of
// this machine that is not loopback (kocache talks plain HTTP to loopback, like Docker), with a
// self-signed certificate that the CLI trusts through NODE_EXTRA_CA_CERTS, as a user with a
// private CA would set it up.
describe('a registry over TLS', () => {
  let reg: RunningRegistry;
  let work: string;
  before(async () => {
    reg = await startRegistry({ tlsAddress: nonLoopbackAddress() });
    work = tempDir('kocache-tls-');
    appTree(work);
  });
  after(async () => {
    await reg?.stop();
  });

  const publish = (repo: string, extraEnv: Record<string, string | undefined>) =>
    runCli(['publish', '--json', 'app:/app', 'etc:/etc/app', '--base', 'scratch', '--repo', `${reg.host}/${repo}`, '--entrypoint', '/app'],
      { KOCACHE: join(work, 'cache'), ...extraEnv }, { cwd: work });

  test('publish pushes over HTTPS; skopeo reads the image back over TLS; a second publish uploads nothing', async () => {
    const first = await publish('tls/app:v1', { NODE_EXTRA_CA_CERTS: reg.caPath });
    assert.equal(first.code, 0, first.stderr);
    const out = JSON.parse(first.stdout) as { reference: string; digest: string; uploaded: number; present: number; bytesUploaded: number };
    assert.equal(out.uploaded, 3);
    const certDir = mkdtempSync(join(work, 'certs-'));
    copyFileSync(reg.caPath!, join(certDir, 'ca.crt'));
    const raw = await skopeo('inspect', '--raw', '--cert-dir', certDir, `docker://${reg.host}/tls/app:v1`);
    assert.equal(`sha256:${createHash('sha256').update(raw).digest('hex')}`, out.digest);

    const again = await publish('tls/app:v1', { NODE_EXTRA_CA_CERTS: reg.caPath });
    assert.equal(again.code, 0, again.stderr);
    const second = JSON.parse(again.stdout) as typeof out;
    assert.deepEqual(
      { reference: second.reference, digest: second.digest, uploaded: second.uploaded, present: second.present, bytesUploaded: second.bytesUploaded },
      { reference: out.reference, digest: out.digest, uploaded: 0, present: 3, bytesUploaded: 0 },
    );
  });

  test('a layer bigger than one upload chunk goes up in PATCH chunks over TLS (HTTP/2), and warm reads it back', async () => {
    const dir = join(work, 'big');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'blob.bin'), randomBytes(20 << 20));
    const env = { KOCACHE: join(work, 'big-cache'), NODE_EXTRA_CA_CERTS: reg.caPath };
    const r = await runCli(['publish', '--json', `${dir}:/data`, '--base', 'scratch', '--repo', `${reg.host}/tls/big:v1`], env);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(reg.requests('PATCH', /\/v2\/tls\/big\/blobs\/uploads\//) >= 2, 'the 20 MB layer went up in chunks');
    const warm = await runCli(['warm', `${reg.host}/tls/big:v1`], { ...env, KOCACHE: join(work, 'warm-cache') });
    assert.equal(warm.code, 0, warm.stderr);
  });

  test('requests share connections: HEADs over HTTP/2 do not each open a new TLS connection', async () => {
    const before = connections(reg).length;
    // A new tag of an image whose blobs are all there: a HEAD per blob, then the manifest.
    const r = await publish('tls/app:v2', { NODE_EXTRA_CA_CERTS: reg.caPath });
    assert.equal(r.code, 0, r.stderr);
    const lines = connections(reg).slice(before);
    assert.ok(lines.length >= 4, `several requests (${lines.length})`);
    assert.ok(lines.every((l) => l.proto === 'HTTP/2.0'), 'spoken over HTTP/2');
    assert.ok(new Set(lines.map((l) => l.addr)).size < lines.length, `fewer connections than requests: ${JSON.stringify(lines)}`);
  });

  test('the CA file reaches TLS connections although Node never saw it at start-up, and credential helpers still get it', async () => {
    // The launcher hands NODE_EXTRA_CA_CERTS over for a late load (src/cli/startup/kocache.sh); the
    // publishes above prove the late load trusts the registry. Here, behind a password: the
    // credential helper kocache runs sees the variable as the user set it.
    const htpasswd = join(work, 'htpasswd');
    writeHtpasswd(htpasswd, { alice: 'tls secret' });
    const locked = await startRegistry({ tlsAddress: nonLoopbackAddress(), extraConfig: htpasswdConfig(htpasswd) });
    try {
      const bin = mkdtempSync(join(work, 'helper-'));
      const seen = join(bin, 'seen');
      writeFileSync(join(bin, 'docker-credential-kotls'),
        `#!/bin/sh\nprintf '%s' "$NODE_EXTRA_CA_CERTS" > ${seen}\nread server\nprintf '{"ServerURL":"%s","Username":"alice","Secret":"tls secret"}' "$server"\n`);
      chmodSync(join(bin, 'docker-credential-kotls'), 0o755);
      const config = mkdtempSync(join(work, 'docker-config-'));
      writeFileSync(join(config, 'config.json'), JSON.stringify({ credHelpers: { [locked.host]: 'kotls' } }));
      const r = await runCli(['publish', '--json', 'app:/app', '--base', 'scratch', '--repo', `${locked.host}/tls/helped:v1`],
        { KOCACHE: join(work, 'cache'), NODE_EXTRA_CA_CERTS: locked.caPath, DOCKER_CONFIG: config, PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` }, { cwd: work });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(readFileSync(seen, 'utf8'), locked.caPath);
      assert.equal(locked.uploadsStarted('tls/helped'), 2);
    } finally {
      await locked.stop();
    }
  });

  test('a certificate nobody vouches for is one line naming the registry, and nothing is pushed', async () => {
    const r = await publish('tls/untrusted:v1', { NODE_EXTRA_CA_CERTS: undefined });
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, new RegExp(`${reg.host.replace(/\./g, '\\.')}.*certificate`, 'i'));
    assert.equal(reg.uploadsStarted('tls/untrusted'), 0);
  });
});

/** Per request in the registry's log, in order: the client's address and port, and the protocol. */
function connections(reg: RunningRegistry): { addr: string; proto: string }[] {
  const text = reg.log();
  const addrs = [...text.matchAll(/msg="response completed[^"]*".*?http\.request\.remoteaddr="([^"]+)"/g)].map((m) => m[1]!);
  const protos = [...text.matchAll(/^\S+ - - \[[^\]]*\] "[A-Z]+ \S+ (HTTP\/[0-9.]+)"/gm)].map((m) => m[1]!);
  assert.equal(addrs.length, protos.length, 'one structured and one access line per request');
  return addrs.map((addr, i) => ({ addr, proto: protos[i]! }));
}
