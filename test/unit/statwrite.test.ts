import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { type StatFilesJob, type StatWriteIo, digestListing, encodeStatFiles } from '../../src/layer/statwrite.js';

const io = { createHash, digestListing, randomBytes } as unknown as StatWriteIo;

test("encodeStatFiles: a first walk's stamps taken from the listing are the bytes of the same stamps given whole", () => {
  // A listing of five entries: a file, a directory, a symlink (with a target), a file with a
  // non-ASCII name, a file in a folder; the three files stamped.
  const entries = [
    { rel: 'a.txt', target: '', stamped: true },
    { rel: 'dir', target: '', stamped: false },
    { rel: 'link', target: 'a.txt', stamped: false },
    { rel: 'naïve-файл.js', target: '', stamped: true },
    { rel: 'dir/b.bin', target: '', stamped: true },
  ];
  const numbers = new Float64Array(entries.length * 7).map((_, i) => i * 1.5 + 1);
  const names = entries.map((e) => `${e.rel}\0${e.target}\0`).join('');
  const stampedRows = entries.flatMap((e, i) => (e.stamped ? [i] : []));
  const hex = stampedRows.map((i) => createHash('sha256').update(String(i)).digest('hex')).join('');
  const listing = { path: '/x/listing.json', version: 1, fingerprint: 'fp:test', head: 'fingerprint 9, 5 entries\n', numbers, names };
  const stamps = { path: '/x/stamps', header: `kocache stamps 3 ${stampedRows.length}`, headerBytes: 64, hex };
  const fromListing: StatFilesJob = { stamps: { ...stamps, ofListing: Uint8Array.from(entries.map((e) => (e.stamped ? 1 : 0))) }, listing };
  const whole: StatFilesJob = {
    stamps: {
      ...stamps,
      numbers: Float64Array.from(stampedRows.flatMap((i) => [...numbers.subarray(i * 7 + 2, i * 7 + 7)])),
      names: stampedRows.map((i) => `${entries[i]!.rel}\0`).join(''),
    },
    listing: { ...listing, digest: digestListing(listing.head, numbers, names, createHash) },
  };
  const a = encodeStatFiles(fromListing, io);
  const b = encodeStatFiles(whole, io);
  assert.equal(a.length, 2);
  assert.deepEqual(a.map((f) => f.path), ['/x/stamps', '/x/listing.json']);
  assert.ok(Buffer.from(a[0]!.data).equals(Buffer.from(b[0]!.data)), 'the same stamps file');
  assert.equal(a[1]!.data, b[1]!.data, 'the same listing file (its digest worked out from the bytes)');
  const text = Buffer.from(a[0]!.data);
  const namesBytes = Buffer.byteLength(whole.stamps!.names!);
  assert.equal(text.subarray(0, 64).toString('latin1'), `kocache stamps 3 3 ${namesBytes}`.padEnd(63, ' ') + '\n');
  assert.equal(text.length, 64 + 3 * 5 * 8 + hex.length + namesBytes);
  assert.equal(text.subarray(text.length - namesBytes).toString('utf8'), 'a.txt\0naïve-файл.js\0dir/b.bin\0');
});
