import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openCache } from '../../src/cache/open.js';
import { scanLeases } from '../../src/cache/lease.js';

test('openCache holds a lease gc can see until close()', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kocache-open-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cache = openCache(join(dir, 'cache'), { purpose: 'a test' });
  const live = scanLeases(cache.dir).live;
  assert.equal(live.length, 1);
  assert.equal(live[0]!.pid, process.pid);
  assert.equal(live[0]!.command, 'a test');
  cache.close();
  cache.close(); // twice is fine
  assert.deepEqual(scanLeases(cache.dir).live, []);
});

test('many caches open at once: no leak warning, and each lease is released at exit', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kocache-open-many-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const index = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'index.js');
  // Twelve leases and twelve throwaway caches, none closed: the process's exit releases them.
  const script = `import { openCache, resolveCacheLocation } from ${JSON.stringify(index)};
    for (let i = 0; i < 12; i++) openCache(${JSON.stringify(join(dir, 'cache'))}, { purpose: 'job ' + i });
    for (let i = 0; i < 12; i++) console.log(resolveCacheLocation({ noCache: true }).dir);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'nothing on stderr (Node warns past ten exit listeners)');
  assert.deepEqual(readdirSync(join(dir, 'cache', 'leases')), []);
  const throwaway = r.stdout.trim().split('\n');
  assert.equal(throwaway.length, 12);
  assert.deepEqual(throwaway.filter((d) => existsSync(d)), [], 'every throwaway cache is removed');
});

test('at exit, a lease that cannot be removed leaves the rest done, with no stack trace', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kocache-open-exit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const index = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'index.js');
  // The lease file replaced by a folder (unlink then fails, EISDIR); a throwaway cache made after it.
  const leases = join(dir, 'cache', 'leases');
  const script = `import { mkdirSync, readdirSync, rmSync } from 'node:fs';
    import { join } from 'node:path';
    import { openCache, resolveCacheLocation } from ${JSON.stringify(index)};
    openCache(${JSON.stringify(join(dir, 'cache'))});
    const lease = join(${JSON.stringify(leases)}, readdirSync(${JSON.stringify(leases)})[0]);
    rmSync(lease);
    mkdirSync(lease);
    console.log(resolveCacheLocation({ noCache: true }).dir);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.equal(existsSync(r.stdout.trim()), false, 'the throwaway cache is removed');
});
