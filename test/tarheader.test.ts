import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import tar from 'tar-stream';
import { HeaderWriter, headerBytes, padding, type EntryHeader } from '../src/layer/tarheader.js';
import { tempDir } from './helpers/cli.js';

const base = { uid: 0, gid: 0, uname: '', gname: '', mtime: new Date(0), size: 0 };

/** Headers of every shape the writer has: each field limit, just inside and just past it. */
function cases(): { header: EntryHeader; body: Buffer }[] {
  const file = (name: string, body = '', extra: Partial<EntryHeader> = {}) => ({
    header: { ...base, name, type: 'file' as const, mode: 0o644, size: Buffer.byteLength(body), ...extra },
    body: Buffer.from(body),
  });
  const dir = (name: string) => ({ header: { ...base, name, type: 'directory' as const, mode: 0o755 }, body: Buffer.alloc(0) });
  const link = (name: string, linkname: string) => ({ header: { ...base, name, type: 'symlink' as const, mode: 0o777, linkname }, body: Buffer.alloc(0) });
  const c100 = 'n'.repeat(100);
  return [
    file('app/hello.txt', 'hello\n'),
    file('app/exec', '#!/bin/sh\n', { mode: 0o755, mtime: new Date(1_700_000_000_999) }),
    file('app/empty'),
    file('app/setuid', 'x', { mode: 0o104755 }), // only the permission bits are kept
    dir('app/'),
    dir('usr/local/lib/'),
    file(c100), // exactly 100: ustar name
    file(`${c100}x`), // 101, no slash: PAX
    file(`${'p'.repeat(155)}/${c100}`), // longest prefix and name: ustar
    file(`${'p'.repeat(156)}/${c100}`), // prefix 156: PAX
    file(`${'a/'.repeat(60)}leaf.txt`, 'deep'), // split at the first slash that fits
    dir(`${'d'.repeat(120)}/`), // a name that splits into a prefix and an empty name
    file('grüße/日本.txt', 'non-ascii\n'), // not ASCII: PAX
    link('app/link', 'hello.txt'),
    link('app/abs', '/etc/passwd'),
    link('app/long-link', `/${'t'.repeat(99)}`), // link of exactly 100: ustar
    link('app/longer-link', `/${'t'.repeat(100)}`), // 101: PAX with linkpath
    link('ünï/link', 'target'), // PAX for the name, the link in it too
    link('app/link-ünï', 'zïel'), // a non-ASCII link that fits stays in ustar, as UTF-8
    file(`${'q'.repeat(89)}/x`, 'y'), // PAX bodies whose length crosses a digit: 98, 99, 100 bytes
    file(`${'q'.repeat(90)}/${'x'.repeat(20)}ü`, 'y'),
    file(`${'q'.repeat(300)}ü`, 'z'.repeat(1000)), // a PAX body and a body over one record
    file('app/big-mode', 'm', { mode: 0o7777, uid: 0o777777, gid: 0o1000000 }), // gid too large: sevens
  ];
}

/** What tar-stream's public pack stream writes for the same entries. */
async function packed(entries: { header: EntryHeader; body: Buffer }[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (b) => chunks.push(b as Buffer));
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const { header, body } of entries) {
    await new Promise<void>((resolve, reject) => pack.entry({ ...header }, body, (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function written(entries: { header: EntryHeader; body: Buffer }[]): Buffer {
  const out: Buffer[] = [];
  for (const { header, body } of entries) {
    out.push(...headerBytes(header), body, Buffer.alloc(padding(body.byteLength)));
  }
  out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

test("headers are byte for byte what tar-stream's pack stream writes", async () => {
  for (const entry of cases()) {
    assert.deepEqual(written([entry]), await packed([entry]), entry.header.name);
  }
});

test('headers of fixed entries keep their bytes (golden digest)', () => {
  const all = written(cases());
  assert.equal(all.byteLength, 26_112);
  assert.equal(createHash('sha256').update(all).digest('hex'), '8bc32253ae9021fff3f85f3b3621997138eb19eb44811d8bf5a081139e394c45');
});

test('GNU tar reads back every name, link and size', () => {
  const entries = cases();
  const file = join(tempDir(), 'headers.tar');
  writeFileSync(file, written(entries));
  const listed = execFileSync('tar', ['--numeric-owner', '-tvf', file], { encoding: 'utf8' }).trimEnd().split('\n');
  assert.equal(listed.length, entries.length);
  entries.forEach(({ header }, i) => {
    const line = listed[i]!;
    const name = header.type === 'symlink' ? `${header.name} -> ${header.linkname}` : header.name;
    assert.ok(line.endsWith(` ${name}`), `${line} names ${name}`);
    assert.match(line, new RegExp(`^${header.type === 'directory' ? 'd' : header.type === 'symlink' ? 'l' : '-'}`));
    assert.match(line, new RegExp(` ${header.size} `));
  });
});

test('a size past 8 GiB is written in base-256; out-of-range times and sizes are refused', () => {
  const [h] = headerBytes({ ...base, name: 'huge', type: 'file', mode: 0o644, size: 10 * 2 ** 30 });
  assert.deepEqual([...h!.subarray(124, 136)], [0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x80, 0, 0, 0]);
  const [under] = headerBytes({ ...base, name: 'under', type: 'file', mode: 0o644, size: 8 ** 11 - 1 });
  assert.equal(under!.subarray(124, 136).toString('latin1'), '77777777777 ');
  assert.throws(() => headerBytes({ ...base, name: 'x', type: 'file', mode: 0o644, mtime: new Date(-1000) }), RangeError);
  assert.throws(() => headerBytes({ ...base, name: 'x', type: 'file', mode: 0o644, size: -1 }), RangeError);
});

test('HeaderWriter gives the bytes headerBytes gives, for every shape and owner', () => {
  const sizes = [0, 1, 511, 512, 8 ** 11 - 1, 8 ** 11, 10 * 2 ** 30];
  const owners = [base, { ...base, uid: 1000, gid: 1000, uname: 'app', gname: 'staff', mtime: new Date(1_700_000_000_999) }, { ...base, uid: 0o1000000, gid: 7 }];
  for (const shared of owners) {
    const writer = new HeaderWriter(shared);
    for (const { header } of cases()) {
      for (const size of header.type === 'file' ? sizes : [0]) {
        const h = { ...header, ...shared, size };
        const fast = Buffer.concat(writer.header(h.name, h.type, h.mode, h.size, h.linkname));
        assert.deepEqual(fast, Buffer.concat(headerBytes(h)), `${h.name} size ${size} uid ${shared.uid}`);
      }
    }
  }
  // A record handed out is reused by the next call: the caller copies it first (tar.ts does).
  const writer = new HeaderWriter(base);
  const first = writer.header('a', 'file', 0o644, 1)[0]!;
  const kept = Buffer.from(first);
  writer.header('b', 'file', 0o600, 2);
  assert.notDeepEqual(first, kept);
  assert.throws(() => writer.header('x', 'file', 0o644, -1), RangeError);
});
