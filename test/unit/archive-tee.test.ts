import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tee } from '../../src/tarball/tee.js';
import { entryPath, linkTarget } from '../../src/tarball/entries.js';
import { KocacheError } from '../../src/errors.js';

async function* counted(n: number, pulled: { count: number }): AsyncGenerator<number> {
  for (let i = 0; i < n; i++) {
    pulled.count++;
    yield i;
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test('tee: every branch sees every chunk, and the source is read once', async () => {
  const pulled = { count: 0 };
  const [a, b] = tee(counted(100, pulled), 2) as [AsyncIterable<number>, AsyncIterable<number>];
  const [ra, rb] = await Promise.all([collect(a), collect(b)]);
  const want = Array.from({ length: 100 }, (_, i) => i);
  assert.deepEqual(ra, want);
  assert.deepEqual(rb, want);
  assert.equal(pulled.count, 100);
});

test('tee: a fast branch cannot run more than `lead` chunks ahead of a stalled one', async () => {
  const pulled = { count: 0 };
  const [fast, slow] = tee(counted(50, pulled), 2, 3) as [AsyncIterable<number>, AsyncIterable<number>];
  const seen: number[] = [];
  const fastDone = (async () => {
    for await (const x of fast) seen.push(x);
  })();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(seen.length, 3, 'the fast branch waits for the slow one');
  assert.ok(pulled.count <= 4, `source pulled ${pulled.count} chunks ahead`);
  assert.equal((await collect(slow)).length, 50);
  await fastDone;
  assert.equal(seen.length, 50);
});

test('tee: a branch that stops early no longer holds the other back', async () => {
  const pulled = { count: 0 };
  const [quitter, stayer] = tee(counted(30, pulled), 2, 2) as [AsyncIterable<number>, AsyncIterable<number>];
  for await (const x of quitter) if (x === 1) break;
  assert.equal((await collect(stayer)).length, 30);
});

test('tee: a source failure reaches every branch', async () => {
  async function* failing(): AsyncGenerator<number> {
    yield 1;
    throw new Error('disk on fire');
  }
  const [a, b] = tee(failing(), 2) as [AsyncIterable<number>, AsyncIterable<number>];
  const results = await Promise.allSettled([collect(a), collect(b)]);
  for (const r of results) assert.equal(r.status, 'rejected');
});

test('entry names: ./ and // are cleaned; absolute and .. names are refused', () => {
  assert.equal(entryPath('./a//b/', 'x'), 'a/b');
  assert.equal(entryPath('manifest.json', 'x'), 'manifest.json');
  assert.throws(() => entryPath('/etc/passwd', 'x'), KocacheError);
  assert.throws(() => entryPath('a/../../b', 'x'), KocacheError);
});

test('link targets: relative to the link for symlinks, to the root for hard links, never outside', () => {
  assert.equal(linkTarget('abc/layer.tar', '../def/layer.tar', true, 'x'), 'def/layer.tar');
  assert.equal(linkTarget('abc/layer.tar', 'def/layer.tar', false, 'x'), 'def/layer.tar');
  assert.throws(() => linkTarget('abc/layer.tar', '../../etc/passwd', true, 'x'), /leaves the archive/);
  assert.throws(() => linkTarget('abc/layer.tar', '/etc/passwd', true, 'x'), /absolute path/);
  assert.throws(() => linkTarget('layer.tar', '../x', false, 'x'), /leaves the archive/);
});
