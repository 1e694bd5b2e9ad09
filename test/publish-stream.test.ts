import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type PublishOut, runCli, tempDir, traceOf } from './helpers/cli.js';
import { type Fault, startFaultProxy } from './helpers/fault-proxy.js';
import { skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

// A layer built by publish goes up while it is built (src/remote/upload.ts, StreamedUpload): one
// upload session, the bytes PATCHed as written, never a second upload from the store. A stream the
// registry breaks falls back to that upload, and the image is the same.

let work: string;
let tree: string;
let reg: RunningRegistry;

before(async () => {
  work = tempDir('kocache-publish-stream-');
  tree = join(work, 'tree');
  mkdirSync(join(tree, 'lib'), { recursive: true });
  mkdirSync(join(work, 'copies'));
  // Incompressible, so the blob is above the 16 MiB threshold of a chunked upload.
  writeFileSync(join(tree, 'big.bin'), randomBytes(20 << 20));
  for (let i = 0; i < 200; i++) writeFileSync(join(tree, 'lib', `m${i}.js`), `module.exports = ${i};\n`.repeat(50));
  reg = await startRegistry();
});
after(async () => {
  await reg?.stop();
});

interface Run { out: PublishOut; trace: Record<string, number> }

async function publish(host: string, repo: string, cache: string): Promise<Run> {
  const r = await runCli(['publish', '--json', `${tree}:/app`, '--base', 'scratch', '--repo', `${host}/${repo}:v1`], { KOCACHE: join(work, cache), KOCACHE_TRACE: '1' });
  assert.equal(r.code, 0, r.stderr);
  return { out: JSON.parse(r.stdout) as PublishOut, trace: traceOf(r.stderr) };
}

/** The layer's descriptor as the registry serves the image (skopeo checks every digest it reads). */
async function layerOf(repo: string): Promise<{ digest: string; size: number }> {
  const m = JSON.parse(await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/${repo}:v1`)) as { layers: { digest: string; size: number }[] };
  await skopeo('copy', '--quiet', '--src-tls-verify=false', `docker://${reg.host}/${repo}:v1`, `oci:${join(work, 'copies', repo.replace(/\//g, '-'))}:v1`);
  assert.equal(m.layers.length, 1);
  return m.layers[0]!;
}

/** Digest of the layer a cold `kocache build` makes of the tree now, in an empty cache. */
async function coldDigest(cache: string): Promise<string> {
  const r = await runCli(['build', '--json', `${tree}:/app`, '--import-path', 'stream/app'], { KOCACHE: join(work, cache) });
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { digest: string }).digest;
}

test('publish: a built layer goes up while built, in one session; an edit (stitched) too; a hit uploads as before', async () => {
  const first = await publish(reg.host, 'stream/app', 'cache');
  const layer = await layerOf('stream/app');
  assert.equal(first.trace['upload.streamed'], layer.size, 'every byte of the layer went up as it was built');
  assert.equal(first.trace['upload.stream.dropped'], undefined);
  assert.equal(reg.uploadsStarted('stream/app'), 2, 'one session for the layer, one for the config: nothing uploaded twice');
  assert.equal(reg.requests('PATCH', /^\/v2\/stream\/app\/blobs\/uploads\//), Math.ceil(layer.size / (8 << 20)));
  assert.equal(first.out.uploaded, 2);
  assert.ok(first.out.bytesUploaded > layer.size, 'the streamed layer counts as uploaded');
  assert.equal(layer.digest, await coldDigest('cold-1'), 'the stored blob is a cold build\'s');

  // A one-file edit: the layer is stitched from the last one's blocks, and streamed the same way.
  appendFileSync(join(tree, 'lib', 'm7.js'), '// edited\n');
  const edit = await publish(reg.host, 'stream/app', 'cache');
  assert.ok((edit.trace['gzip.reused'] ?? 0) > 0, 'the edit reused blocks');
  const edited = await layerOf('stream/app');
  assert.notEqual(edited.digest, layer.digest);
  assert.equal(edit.trace['upload.streamed'], edited.size);
  assert.equal(reg.uploadsStarted('stream/app'), 4);
  assert.equal(edited.digest, await coldDigest('cold-2'));

  // A hit builds nothing: its layer is pushed from the store (HEAD, then an upload to a new repository).
  const hit = await publish(reg.host, 'stream/hit', 'cache');
  assert.equal(hit.trace['upload.streamed'], undefined);
  assert.equal((await layerOf('stream/hit')).digest, edited.digest);
  assert.equal(hit.out.layers.cached, 1);
});

async function faulted(name: string, faults: (layerDigest: string) => Fault[]): Promise<void> {
  const cold = await coldDigest(`cold-${name.replace(/\//g, '-')}`);
  const proxy = await startFaultProxy(reg.port, faults(cold));
  try {
    const run = await publish(proxy.host, name, `cache-${name.replace(/\//g, '-')}`);
    assert.equal(proxy.injected.length, 1, proxy.injected.join('\n'));
    assert.equal(run.trace['upload.stream.dropped'], 1, 'the stream was given up');
    const layer = await layerOf(name);
    assert.equal(layer.digest, cold, 'the image holds a cold build\'s layer');
    assert.equal(run.out.uploaded, 2);
    // The stream's session and the upload from the store, plus the config's.
    assert.equal(reg.uploadsStarted(name), 3);
  } finally {
    await proxy.stop();
  }
}

test('publish: a PATCH refused mid-stream falls back to an upload from the store; the image is right', async () => {
  await faulted('stream/patch', () => [{ method: 'PATCH', path: /^\/v2\/stream\/patch\/blobs\/uploads\//, skip: 1, times: 1, status: 500 }]);
});

test('publish: a refused closing PUT of the stream falls back too', async () => {
  // Only the layer's PUT (its digest is a cold build's), not the config's.
  await faulted('stream/put', (digest) => [{ method: 'PUT', path: new RegExp(`^/v2/stream/put/blobs/uploads/.*digest=sha256(%3A|:)${digest.slice(7)}`), times: 1, status: 400 }]);
});
