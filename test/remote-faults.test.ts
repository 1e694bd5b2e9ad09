import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { KocacheError } from '../src/errors.js';
import { parseReference } from '../src/reference/reference.js';
import { RegistryClient } from '../src/remote/client.js';
import { pushImage } from '../src/remote/push.js';
import { parseRetryAfter } from '../src/remote/retry.js';
import { type FaultProxy, startFaultProxy } from './helpers/fault-proxy.js';
import { randomImage } from './helpers/images.js';
import { type RunningRegistry, skopeoPath, startRegistry } from './helpers/registry.js';

const FAST = { baseDelayMs: 10, maxDelayMs: 50 };
const SMALL_CHUNKS = { chunkThreshold: 256 << 10, chunkSize: 128 << 10 };

test('Retry-After is read as seconds or as an HTTP date', () => {
  assert.equal(parseRetryAfter('3'), 3000);
  assert.equal(parseRetryAfter(new Date(1_000_000 + 5_000).toUTCString(), 1_000_000), 5000);
  assert.equal(parseRetryAfter(new Date(0).toUTCString(), 1_000_000), 0);
  assert.equal(parseRetryAfter('soon'), undefined);
  assert.equal(parseRetryAfter(undefined), undefined);
});

describe('retries against a fault-injecting proxy in front of a real registry', () => {
  let reg: RunningRegistry;
  let proxy: FaultProxy | undefined;
  before(async () => { reg = await startRegistry(); });
  after(async () => { await proxy?.stop(); await reg.stop(); });

  test('5xx, 429 with Retry-After, and connections dropped mid-upload: the push still lands intact', async () => {
    proxy = await startFaultProxy(reg.port, [
      { method: 'HEAD', path: /\/blobs\/sha256:/, times: 1, status: 429, headers: { 'retry-after': new Date(Date.now() + 1000).toUTCString() } },
      { method: 'POST', path: /\/blobs\/uploads\/$/, times: 2, status: 503, headers: { 'retry-after': '1' } },
      { method: 'PUT', path: /\/blobs\/uploads\//, times: 1, resetAfterBytes: 1000 },
      { method: 'PATCH', path: /\/blobs\/uploads\//, times: 1, resetAfterBytes: 100_000 },
      { method: 'PUT', path: /\/manifests\/v1$/, times: 1, status: 500 },
    ]);
    const warnings: string[] = [];
    // Six tries, not four: each blob's upload has one budget of tries for all its steps, and which
    // blob draws which of these faults depends on timing (HEADs run together, uploads in turn); one
    // blob drawing the two 503s and both resets would otherwise give up, which is right, but is not
    // what this test is about.
    const client = new RegistryClient({ retry: { ...FAST, tries: 6 }, upload: SMALL_CHUNKS, warn: (m) => warnings.push(m), jobs: 1 });
    try {
      const image = randomImage([200_000, 600_000]);
      const result = await pushImage(client, parseReference(`${proxy.host}/faulty:v1`), image);
      assert.equal(result.uploaded, 3);
      assert.equal(proxy.injected.length, 6, `every fault fired: ${proxy.injected.join(', ')}`);
      assert.ok(image.layers.some((l) => l.opens >= 2), 'a dropped upload re-opened its source');
      assert.ok(warnings.some((w) => /retrying/.test(w)), 'retries are reported as warnings');
      const raw = execFileSync(skopeoPath(), ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/faulty:v1`], { encoding: 'utf8' });
      assert.equal(raw, image.bytes.toString('utf8'));
      execFileSync(skopeoPath(), ['copy', '--quiet', '--src-tls-verify=false', `docker://${reg.host}/faulty:v1`, `dir:${reg.root}/copy`]);
    } finally {
      await client.close();
      await proxy.stop();
      proxy = undefined;
    }
  });

  test('a download cut off mid-blob resumes with a Range request and verifies', async () => {
    const image = randomImage([300_000]);
    const direct = new RegistryClient();
    await pushImage(direct, parseReference(`${reg.host}/resume:v1`), image);
    await direct.close();
    proxy = await startFaultProxy(reg.port, [{ method: 'GET', path: /\/blobs\/sha256:/, times: 1, cutResponseAfterBytes: 100_000 }]);
    const client = new RegistryClient({ retry: FAST });
    try {
      const layer = image.layers[0]!;
      const parts: Uint8Array[] = [];
      for await (const c of client.getBlob(parseReference(`${proxy.host}/resume`), layer.descriptor)) parts.push(c);
      assert.equal(Buffer.concat(parts).length, layer.descriptor.size);
      assert.deepEqual(proxy.injected, [`GET /v2/resume/blobs/${layer.descriptor.digest} -> cut`]);
      assert.equal(proxy.forwarded.filter((r) => r.startsWith('GET /v2/resume/blobs/')).length, 1, 'one more GET, the resumed one');
    } finally {
      await client.close();
      await proxy.stop();
      proxy = undefined;
    }
  });

  test('relative Location headers are resolved against the URL that sent them', async () => {
    proxy = await startFaultProxy(reg.port, [], { relativeLocations: true });
    const client = new RegistryClient({ upload: SMALL_CHUNKS });
    try {
      const image = randomImage([100_000, 400_000]);
      const result = await pushImage(client, parseReference(`${proxy.host}/relative:v1`), image);
      assert.equal(result.uploaded, 3);
      assert.ok(proxy.forwarded.some((r) => r.startsWith('PATCH /v2/relative/blobs/uploads/')), 'the chunked path ran');
      execFileSync(skopeoPath(), ['copy', '--quiet', '--src-tls-verify=false', `docker://${reg.host}/relative:v1`, `dir:${reg.root}/relative`]);
    } finally {
      await client.close();
      await proxy.stop();
      proxy = undefined;
    }
  });

  test('a registry that keeps failing: one line after the last try', async () => {
    proxy = await startFaultProxy(reg.port, [{ method: 'PUT', path: /\/manifests\//, times: 99, status: 500 }]);
    const client = new RegistryClient({ retry: FAST });
    try {
      await assert.rejects(pushImage(client, parseReference(`${proxy.host}/down:v1`), randomImage([1_000])), (err: unknown) => {
        assert.ok(err instanceof KocacheError);
        assert.equal(err.message, `PUT ${proxy?.host}/down:v1: registry answered 500 (UNAVAILABLE: injected fault), 4 tries`);
        return true;
      });
      assert.equal(proxy.injected.length, 4);
    } finally {
      await client.close();
      await proxy.stop();
      proxy = undefined;
    }
  });

  test('a Retry-After longer than kocache waits ends the push at once, saying so', async () => {
    proxy = await startFaultProxy(reg.port, [{ method: 'PUT', path: /\/manifests\//, times: 99, status: 429, headers: { 'retry-after': '3600' } }]);
    const client = new RegistryClient({ retry: FAST });
    try {
      await assert.rejects(pushImage(client, parseReference(`${proxy.host}/later:v1`), randomImage([1_000])), (err: unknown) => {
        assert.ok(err instanceof KocacheError);
        assert.equal(err.message, `PUT ${proxy?.host}/later:v1: registry answered 429 (UNAVAILABLE: injected fault); it asks to wait 3600 s, longer than kocache waits`);
        return true;
      });
      assert.equal(proxy.injected.length, 1);
    } finally {
      await client.close();
      await proxy.stop();
      proxy = undefined;
    }
  });
});
