import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseReference } from '../src/reference/reference.js';
import { RegistryClient } from '../src/remote/client.js';
import { pushImage } from '../src/remote/push.js';
import { type FaultProxy, startFaultProxy } from './helpers/fault-proxy.js';
import { isOneLineError, runCli, tempDir } from './helpers/cli.js';
import { appTree } from './helpers/image-fixtures.js';
import { randomImage } from './helpers/images.js';
import { runWatched } from './helpers/watch.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

/** Every file under a folder with its sha256: what "as it was" means. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

describe('a failed publish --output oci:DIR leaves DIR as it was', () => {
  let reg: RunningRegistry;
  let proxy: FaultProxy;
  let base: string;
  const dirs: string[] = [];
  const newDir = () => {
    const d = tempDir('kocache-layout-fail-');
    dirs.push(d);
    appTree(d);
    return d;
  };

  before(async () => {
    reg = await startRegistry();
    const img = randomImage([200_000]);
    const client = new RegistryClient();
    await pushImage(client, parseReference(`${reg.host}/fail/base:v1`), img);
    await client.close();
    // The base's layer cannot be fetched: the publish fails while its other blobs are being written.
    proxy = await startFaultProxy(reg.port, [{ method: 'GET', path: new RegExp(`/blobs/${img.layers[0]!.descriptor.digest}`), times: 1000, status: 404 }]);
    base = `${proxy.host}/fail/base:v1`;
  });
  after(async () => {
    await proxy.stop();
    await reg.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const publish = (dir: string, output: string, from: string) =>
    runCli(['publish', 'app:/app', 'etc:/etc/app', '--base', from, '--jobs', '4', '--output', output], { KOCACHE: join(dir, 'cache') }, { cwd: dir });

  test('a new DIR is not left behind', async () => {
    const dir = newDir();
    const r = await publish(dir, 'oci:out', base);
    assert.ok(isOneLineError(r), `one-line error, got ${r.code}:\n${r.stderr}`);
    assert.ok(!existsSync(join(dir, 'out')), `out/ holds ${JSON.stringify(existsSync(join(dir, 'out')) ? snapshot(join(dir, 'out')) : {})}`);
  });

  test('an existing layout keeps exactly its files', async () => {
    const dir = newDir();
    const ok = await publish(dir, 'oci:out', 'scratch');
    assert.equal(ok.code, 0, ok.stderr);
    const before = snapshot(join(dir, 'out'));
    const r = await publish(dir, 'oci:out', base);
    assert.ok(isOneLineError(r), `one-line error, got ${r.code}:\n${r.stderr}`);
    assert.deepEqual(snapshot(join(dir, 'out')), before);
  });

  for (const kind of ['a link to /dev/zero', 'a FIFO'] as const) {
    test(`an index.json that is ${kind} is refused in one line, memory flat, no hang`, async () => {
      const dir = newDir();
      mkdirSync(join(dir, 'out'));
      if (kind === 'a FIFO') execFileSync('mkfifo', [join(dir, 'out', 'index.json')]);
      else symlinkSync('/dev/zero', join(dir, 'out', 'index.json'));
      const r = await runWatched(['publish', 'app:/app', '--base', 'scratch', '--output', 'oci:out'], { KOCACHE: join(dir, 'cache') }, { maxRssKb: 400 * 1024, timeoutMs: 60_000, cwd: dir });
      assert.equal(r.killed, undefined, `killed (${r.killed}) at a peak RSS of ${r.peakRssKb} KiB`);
      assert.ok(isOneLineError(r), `one-line error, got ${r.code}:\n${r.stderr}`);
      assert.match(r.stderr, kind === 'a FIFO' ? /index\.json is not a regular file/ : /index\.json is a link leading out of the folder/);
      assert.deepEqual(readdirSync(join(dir, 'out')), ['index.json'], 'nothing written beside it');
    });
  }
});
