import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type BlobSource, KocacheError, MediaType, type PushableManifest, RegistryClient, parseReference, pushImage, sha256Digest,
  writeDockerArchive, writeLayout,
} from '../src/index.js';
import { tempDir } from './helpers/cli.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

/** An image of one config blob whose bytes come from `open`, as a library user may write it. */
function imageOf(open: () => AsyncIterable<Uint8Array>): PushableManifest {
  const bytes = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const config: BlobSource = { descriptor: { mediaType: MediaType.OciConfig, digest: sha256Digest(bytes), size: bytes.length }, open };
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: config.descriptor, layers: [] }));
  return { kind: 'manifest', bytes: manifest, descriptor: { mediaType: MediaType.OciManifest, digest: sha256Digest(manifest), size: manifest.length }, config, layers: [] };
}

function isSourceError(code: string) {
  return (err: unknown) => err instanceof KocacheError && err.code === code && err.message.startsWith('cannot read the source of blob');
}

// A BlobSource of the caller's that fails is reported as the caller's: not as an unreachable
// registry, not retried, and never an 'error' event that ends the process.
describe("a BlobSource that fails, from the library", () => {
  let reg: RunningRegistry;
  let work: string;
  let client: RegistryClient;
  const warnings: string[] = [];
  before(async () => {
    reg = await startRegistry();
    work = tempDir('kocache-blob-source-');
    client = new RegistryClient({ warn: (m) => warnings.push(m) });
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
  });

  // A file's read stream: opened ahead of its reader, its failure used to be an 'error' nobody heard.
  const missingFile = () => imageOf(() => createReadStream(join(work, 'no-such-file')));
  const throwing = () => imageOf(() => {
    throw new Error('source closed');
  });

  test('pushImage: a missing file is an fs error, a throwing source an input error', async () => {
    // Several tries: the unheard 'error' raced the request that would have read the stream.
    for (let i = 0; i < 5; i++) {
      await assert.rejects(pushImage(client, parseReference(`${reg.host}/lib/src:v${i}`), missingFile()), isSourceError('fs'));
    }
    await assert.rejects(pushImage(client, parseReference(`${reg.host}/lib/src:v1`), throwing()), isSourceError('input'));
    assert.equal(reg.requests('PUT', /\/manifests\//), 0, 'no manifest was put');
    assert.deepEqual(warnings, [], 'nothing was retried');
  });

  test('writeLayout and writeDockerArchive say the same', async () => {
    await assert.rejects(writeLayout(join(work, 'layout'), missingFile()), isSourceError('fs'));
    await assert.rejects(writeLayout(join(work, 'layout'), throwing()), isSourceError('input'));
    await assert.rejects(writeDockerArchive(join(work, 'image.tar'), missingFile()), isSourceError('fs'));
  });
});
