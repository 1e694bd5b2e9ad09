import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startRegistry } from './helpers/registry.js';

test('the real registry starts, answers /v2/, logs access lines, and stops', async () => {
  const reg = await startRegistry();
  try {
    const res = await fetch(`http://${reg.host}/v2/`);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const before = reg.requests('GET', /^\/v2\/$/);
    assert.ok(before >= 1, 'access log records GET /v2/');
  } finally {
    await reg.stop();
  }
});
