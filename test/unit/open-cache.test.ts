import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
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
