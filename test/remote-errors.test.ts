import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KocacheError } from '../src/errors.js';
import { sha256Digest } from '../src/oci/digest.js';
import { MediaType } from '../src/oci/mediatypes.js';
import { type Reference, parseReference } from '../src/reference/reference.js';
import { RegistryClient } from '../src/remote/client.js';
import { pushImage } from '../src/remote/push.js';
import type { PushableManifest } from '../src/oci/pushable.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { memoryBlob, randomImage } from './helpers/images.js';
import { type RunningRegistry, freePort, startRegistry } from './helpers/registry.js';
import { traceSnapshot } from '../src/util/trace.js';

async function oneLineError(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof KocacheError, `a KocacheError, got ${err instanceof Error ? err.stack : String(err)}`);
    assert.ok(!err.message.includes('\n'), `one line: ${err.message}`);
    return err.message;
  }
  assert.fail('expected a rejection');
}

test('an unreachable registry: "cannot reach registry HOST: connection refused"', async () => {
  const port = await freePort();
  const client = new RegistryClient();
  try {
    const msg = await oneLineError(client.resolve(parseReference(`127.0.0.1:${port}/app:v1`)));
    assert.equal(msg, `cannot reach registry 127.0.0.1:${port}: connection refused`);
    const push = await oneLineError(pushImage(client, parseReference(`127.0.0.1:${port}/app:v1`), randomImage([10])));
    assert.equal(push, `cannot reach registry 127.0.0.1:${port}: connection refused`);
  } finally {
    await client.close();
  }
});

test('a registry with a certificate nobody vouches for: a TLS error naming the reason', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kocache-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  const server = createServer({ key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem')) }, (_req, res) => res.end('{}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const client = new RegistryClient();
  try {
    const msg = await oneLineError(client.resolve({ registry: `[::ffff:7f00:1]:${port}`, repository: 'app', tag: 'v1' }));
    assert.match(msg, /^TLS error talking to registry \[::ffff:7f00:1\]:\d+: self[- ]signed certificate \(for a private CA, point NODE_EXTRA_CA_CERTS/);
  } finally {
    await client.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('errors from a real registry', () => {
  let reg: RunningRegistry;
  let client: RegistryClient;
  before(async () => {
    reg = await startRegistry();
    client = new RegistryClient();
  });
  after(async () => {
    await client.close();
    await reg.stop();
  });

  test('HTTPS to a plain-HTTP registry is a TLS error with a hint; listing it as insecure fixes it', async () => {
    // The IPv4-mapped IPv6 form of 127.0.0.1 is not on the loopback list, so kocache speaks HTTPS to it.
    const mapped: Reference = { registry: `[::ffff:7f00:1]:${reg.port}`, repository: 'app', tag: 'v1' };
    const msg = await oneLineError(client.resolve(mapped));
    assert.match(msg, /^TLS error talking to registry \[::ffff:7f00:1\]:\d+: .*KOCACHE_INSECURE_REGISTRIES/);
    const insecure = new RegistryClient({ insecureRegistries: [mapped.registry] });
    try {
      assert.equal(await insecure.resolve(mapped), undefined);
    } finally {
      await insecure.close();
    }
    process.env.KOCACHE_INSECURE_REGISTRIES = ` other.example, ${mapped.registry} `;
    const fromEnv = new RegistryClient();
    try {
      assert.equal(await fromEnv.resolve(mapped), undefined);
    } finally {
      delete process.env.KOCACHE_INSECURE_REGISTRIES;
      await fromEnv.close();
    }
  });

  test('a missing tag or repository: "REF: manifest not found"', async () => {
    await pushImage(client, parseReference(`${reg.host}/there:v1`), randomImage([100]));
    assert.equal(await oneLineError(client.getManifest(parseReference(`${reg.host}/there:v2`))), `${reg.host}/there:v2: manifest not found`);
    const missingRepo = await oneLineError(client.getManifest(parseReference(`${reg.host}/nowhere/app:v1`)));
    assert.match(missingRepo, new RegExp(`^${reg.host}/nowhere/app:v1: (manifest|repository) not found$`));
    const d = sha256Digest('x');
    assert.equal(await oneLineError(client.getManifest(parseReference(`${reg.host}/there@${d}`))), `${reg.host}/there@${d}: manifest not found`);
  });

  test('a blob that is not there: one line naming it', async () => {
    const d = sha256Digest('no such blob');
    const msg = await oneLineError((async () => {
      for await (const _ of client.getBlob(parseReference(`${reg.host}/there`), { mediaType: MediaType.OciLayerGzip, digest: d, size: 12 })) { /* drain */ }
    })());
    assert.match(msg, new RegExp(`^${reg.host}/there@${d}: (not found in the registry|repository not found|manifest not found)`));
  });

  test('a blob answered by a bare 404 (no registry error body, as storage behind a redirect gives) is no "manifest not found"', async () => {
    const image = randomImage([1000]);
    await pushImage(client, parseReference(`${reg.host}/bare:v1`), image);
    const layer = image.layers[0]!.descriptor;
    const proxy = await startFaultProxy(reg.port, [{ method: 'GET', path: new RegExp(layer.digest.slice('sha256:'.length)), times: 10, status: 404 }]);
    const viaProxy = new RegistryClient({ insecureRegistries: [proxy.host] });
    try {
      const msg = await oneLineError((async () => {
        for await (const _ of viaProxy.getBlob(parseReference(`${proxy.host}/bare`), layer)) { /* drain */ }
      })());
      assert.equal(msg, `${proxy.host}/bare@${layer.digest}: not found in the registry`);
    } finally {
      await viaProxy.close();
      await proxy.stop();
    }
  });

  test('a manifest naming blobs the registry lacks is refused with the reason', async () => {
    const image = randomImage([100]);
    const msg = await oneLineError(client.putManifest(parseReference(`${reg.host}/lacking:v1`), image.bytes, image.descriptor.mediaType));
    assert.match(msg, /^127\.0\.0\.1:\d+\/lacking:v1: the registry lacks a blob the manifest names \(MANIFEST_BLOB_UNKNOWN/);
  });

  test('manifests put while other clients upload one of their blobs again all land (distribution\'s link race is retried)', async () => {
    // distribution rewrites a blob's link file in place on each finished upload of it; a manifest
    // checked meanwhile reads an empty link and gets DIGEST_INVALID (about 1 PUT in 15 here).
    const config = memoryBlob(Buffer.from('{"shared":"config"}'), MediaType.OciConfig);
    const repo = parseReference(`${reg.host}/linkrace`);
    await client.pushBlob(repo, config);
    const uploadAgain = async (): Promise<void> => {
      const post = await fetch(`http://${reg.host}/v2/linkrace/blobs/uploads/`, { method: 'POST' });
      const at = new URL(post.headers.get('location') ?? '', `http://${reg.host}`);
      at.searchParams.set('digest', config.descriptor.digest);
      const put = await fetch(at, { method: 'PUT', body: Buffer.from('{"shared":"config"}'), headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(put.status, 201);
    };
    const warnings: string[] = [];
    const racer = new RegistryClient({ warn: (m) => warnings.push(m), retry: { baseDelayMs: 5, maxDelayMs: 50 } });
    const stop = Date.now() + 1500;
    let puts = 0;
    try {
      const uploader = async (): Promise<void> => { while (Date.now() < stop) await uploadAgain(); };
      const putter = async (k: number): Promise<void> => {
        for (let i = 0; Date.now() < stop; i++, puts++) {
          const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: config.descriptor, layers: [], annotations: { n: `${k}-${i}` } }));
          await racer.putManifest({ ...repo, tag: `t${k}-${i}` }, manifest, MediaType.OciManifest);
        }
      };
      await Promise.all([uploader(), uploader(), uploader(), putter(1), putter(2)]);
    } finally {
      await racer.close();
    }
    assert.ok(puts > 50, `enough manifests put to meet the race (${puts})`);
    for (const w of warnings) assert.match(w, /DIGEST_INVALID.*retrying in/);
  });

  test('a source whose bytes do not match its descriptor: digest mismatch, nothing tagged', async () => {
    const good = memoryBlob(Buffer.from('the bytes the descriptor promises'));
    const liar = { descriptor: good.descriptor, open: memoryBlob(Buffer.from('other bytes, the very same length!')).open };
    assert.equal(Buffer.from('other bytes, the very same length!').length === good.descriptor.size, false);
    const sameLength = { descriptor: good.descriptor, open: memoryBlob(Buffer.from('THE BYTES THE DESCRIPTOR PROMISES')).open };
    const checked = traceSnapshot()['upload.check'] ?? 0;
    for (const blob of [liar, sameLength]) {
      const msg = await oneLineError(client.pushBlob(parseReference(`${reg.host}/liar`), blob));
      // The source is named as the culprit, not the registry, and the registry never gets the whole wrong blob.
      assert.match(msg, /digest mismatch: the source of sha256:[0-9a-f]{64} yields (more than|\d+ bytes hashing to)/);
    }
    assert.ok((traceSnapshot()['upload.check'] ?? 0) > checked, 'a source that does not check itself is checked by the upload');
    assert.equal(await client.blobExists(parseReference(`${reg.host}/liar`), good.descriptor.digest), false);
  });

  test('a manifest fetched by digest is checked against that digest', async () => {
    const image = randomImage([100]);
    await pushImage(client, parseReference(`${reg.host}/bydigest:v1`), image);
    const got = await client.getManifest(parseReference(`${reg.host}/bydigest@${image.descriptor.digest}`));
    assert.deepEqual(got.descriptor, image.descriptor);
    assert.deepEqual(got.bytes, image.bytes);
  });

  test('a foreign layer is never opened or uploaded; a registry refusing its URL fails at once, not after retries', async () => {
    const image = withForeignLayer(randomImage([100]));
    const before = reg.requests('PUT', /^\/v2\/win\/manifests\//);
    const msg = await oneLineError(pushImage(client, parseReference(`${reg.host}/win:v1`), image));
    assert.match(msg, /the registry lacks a blob the manifest names/);
    assert.equal(reg.requests('PUT', /^\/v2\/win\/manifests\//) - before, 1, 'a validation error is not retried');

    const allowing = await startRegistry({ extraConfig: ['validation:', '  manifests:', '    urls:', '      allow:', "        - '^https://'"].join('\n') });
    const c = new RegistryClient();
    try {
      const result = await pushImage(c, parseReference(`${allowing.host}/win:v1`), image);
      assert.equal(result.uploaded, 2, 'config and the one ordinary layer');
    } finally {
      await c.close();
      await allowing.stop();
    }
  });
});

/** The image with a Windows-style foreign layer appended, whose source must never be opened. */
function withForeignLayer(image: PushableManifest): PushableManifest {
  const foreign = { mediaType: MediaType.DockerForeignLayerGzip, digest: sha256Digest('foreign'), size: 7, urls: ['https://example.com/layer.tar.gz'] };
  const manifest = JSON.parse(image.bytes.toString('utf8')) as { mediaType: string; config: { mediaType: string }; layers: object[] };
  manifest.mediaType = MediaType.DockerManifest;
  manifest.config.mediaType = MediaType.DockerConfig;
  manifest.layers.push(foreign);
  const bytes = Buffer.from(JSON.stringify(manifest));
  return {
    ...image,
    bytes,
    descriptor: { mediaType: MediaType.DockerManifest, digest: sha256Digest(bytes), size: bytes.length },
    config: { ...image.config, descriptor: { ...image.config.descriptor, mediaType: MediaType.DockerConfig } },
    layers: [...image.layers, { descriptor: foreign, open: () => { throw new Error('a foreign layer was opened'); } }],
  };
}
