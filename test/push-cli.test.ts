import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isOneLineError, runCli, tempDir } from './helpers/cli.js';
import { makeDockerArchive, someBytes } from './helpers/archives.js';
import { helloOut, skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

let work: string;
let env: Record<string, string>;
let reg: RunningRegistry;
let layout: string;
const digests: Record<string, string> = {};

/** The documented shape of `kocache push --json` (docs/cli-json.md). */
interface PushJson {
  images: { archive: string; reference: string; digest: string; tag: string | null; uploaded: number; mounted: number; present: number; bytesUploaded: number }[];
  uploaded: number;
  mounted: number;
  present: number;
  bytesUploaded: number;
}

function checkShape(v: PushJson): void {
  assert.deepEqual(Object.keys(v), ['images', 'uploaded', 'mounted', 'present', 'bytesUploaded']);
  for (const i of v.images) assert.deepEqual(Object.keys(i), ['archive', 'reference', 'digest', 'tag', 'uploaded', 'mounted', 'present', 'bytesUploaded']);
  for (const k of ['uploaded', 'mounted', 'present', 'bytesUploaded'] as const) assert.equal(v[k], v.images.reduce((n, i) => n + i[k], 0));
}

async function cli(args: string[]): Promise<string> {
  const r = await runCli(args, env, { cwd: work });
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function remoteDigest(ref: string): Promise<string> {
  return (JSON.parse(await skopeo('inspect', '--tls-verify=false', `docker://${ref}`)) as { Digest: string }).Digest;
}

before(async () => {
  work = tempDir('kocache-push-cli-');
  env = { KOCACHE: join(work, 'cache') };
  helloOut(work);
  reg = await startRegistry();
  // One layout, two images under two tags.
  layout = join(work, 'layout');
  for (const tag of ['a', 'b']) {
    const r = JSON.parse(await cli(['publish', '--json', './out:/app', '--base', 'scratch', '--env', `WHICH=${tag}`, '--output', `oci:${layout}:${tag}`]));
    digests[tag] = r.digest;
  }
  assert.notEqual(digests.a, digests.b);
});
after(async () => {
  await reg?.stop();
});

describe('push transports', () => {
  test('oci:DIR:TAG picks the tagged image; --json has one shape; --image-refs and --digest-file hold what was pushed', async () => {
    const refs = join(work, 'refs');
    const dfile = join(work, 'digest');
    const out = JSON.parse(await cli(['push', '--json', `oci:${layout}:b`, `${reg.host}/tr/app:b`, '--image-refs', refs, '--digest-file', dfile])) as PushJson;
    checkShape(out);
    assert.equal(out.images.length, 1);
    assert.equal(out.images[0]!.digest, digests.b);
    assert.equal(out.images[0]!.tag, 'b');
    assert.equal(await remoteDigest(`${reg.host}/tr/app:b`), digests.b);
    assert.equal(readFileSync(refs, 'utf8'), `${reg.host}/tr/app@${digests.b}\n`);
    assert.equal(readFileSync(dfile, 'utf8'), digests.b);
  });

  test('a layout of several images without a tag is an error listing the tags; so is an unknown tag', async () => {
    const r = await runCli(['push', `oci:${layout}`, `${reg.host}/tr/never:v1`], env, { cwd: work });
    assert.equal(r.code, 2, r.stderr);
    assert.ok(isOneLineError(r), r.stderr);
    assert.match(r.stderr, /holds 2 images: name one as oci:.*layout:TAG \(tags: a, b\)/);
    const bare = await runCli(['push', layout, `${reg.host}/tr/never:v1`], env, { cwd: work });
    assert.equal(bare.code, 2, bare.stderr);
    const unknown = await runCli(['push', `oci:${layout}:c`, `${reg.host}/tr/never:v1`], env, { cwd: work });
    assert.ok(isOneLineError(unknown), unknown.stderr);
    assert.match(unknown.stderr, /no image tagged "c" \(tags: a, b\)/);
    assert.equal(reg.uploadsStarted('tr/never'), 0);
  });

  test('one image under two tags (publish --tag a --tag b) is one image: pushed without :TAG, inspected once with both tags', async () => {
    for (const platforms of [[], ['--platform', 'linux/amd64', '--platform', 'linux/arm64']]) {
      const dir = join(work, `twotags${platforms.length}`);
      const made = JSON.parse(await cli(['publish', '--json', './out:/app', '--base', 'scratch', '--tag', 'a', '--tag', 'b', ...platforms, '--output', `oci:${dir}`])) as { digest: string };
      const pushed = JSON.parse(await cli(['push', '--json', `oci:${dir}`, `${reg.host}/tr/twotags${platforms.length}:v1`])) as PushJson;
      assert.equal(pushed.images[0]!.digest, made.digest);
      assert.equal(await remoteDigest(`${reg.host}/tr/twotags${platforms.length}:v1`), made.digest);
      const seen = JSON.parse(await cli(['inspect', '--json', `oci:${dir}`])) as { digest: string | null; images: { tags: string[] }[] };
      assert.equal(seen.digest, made.digest);
      assert.equal(seen.images.length, platforms.length === 0 ? 1 : 2, 'each image once');
      for (const i of seen.images) assert.deepEqual(i.tags, ['a', 'b']);
    }
  });

  test('oci-archive:FILE:TAG and docker-archive:FILE, together through --also', async () => {
    const ociArchive = join(work, 'img.oci.tar');
    await skopeo('copy', `oci:${layout}:a`, `oci-archive:${ociArchive}:a`);
    const dockerArchive = join(work, 'img.docker.tar');
    await cli(['publish', './out:/app', '--base', 'scratch', '--env', 'WHICH=d', '--output', `docker-archive:${dockerArchive}`]);
    const out = JSON.parse(await cli(['push', '--json', `oci-archive:${ociArchive}:a`, `${reg.host}/tr/oa:v1`, '--also', `docker-archive:${dockerArchive}=${reg.host}/tr/da:v1`])) as PushJson;
    checkShape(out);
    assert.deepEqual(out.images.map((i) => i.archive), [`oci-archive:${ociArchive}:a`, `docker-archive:${dockerArchive}`]);
    assert.equal(out.images[0]!.digest, digests.a, 'an OCI archive keeps its manifest byte for byte');
    assert.equal(await remoteDigest(`${reg.host}/tr/oa:v1`), digests.a);
    assert.equal(await remoteDigest(`${reg.host}/tr/da:v1`), out.images[1]!.digest);
    const text = await runCli(['push', `oci-archive:${ociArchive}:a`, `${reg.host}/tr/oa:v1`], env, { cwd: work });
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stdout, `${reg.host}/tr/oa@${digests.a}\n`);
  });
});

describe('push progress', () => {
  test('a first push shows a plain layer\'s compression advance, per layer and in total, and a line per phase', async () => {
    const dir = join(work, 'progress');
    mkdirSync(dir);
    const archive = makeDockerArchive(dir, [{ files: { data: someBytes(32 << 20, 'push-progress') } }]);
    // Level 9 on one job: a compression slow enough to be drawn while it runs.
    const r = await runCli(['push', archive.path, `${reg.host}/progress/push:v1`, '--level', '9', '-j', '1'], { ...env, KOCACHE_PROGRESS: 'always' }, { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    const drawn = r.stderr.split(/\r|\n/).map((l) => l.replace(/\x1b\[K/g, '')).filter(Boolean);
    const mib = (s: string) => Number(s.split(' ')[0]) * { B: 1 / (1 << 20), KiB: 1 / 1024, MiB: 1, GiB: 1024 }[s.split(' ')[1]!]!;
    const size = mib(`${(archive.plainLayerTarBytes / (1 << 20)).toFixed(1)} MiB`);
    const counts = drawn.flatMap((l) => {
      const m = /compressed ([\d.]+ \w+) of ([\d.]+ \w+)(?: \(layer [0-9a-f]{12} ([\d.]+ \w+) of ([\d.]+ \w+)\))?/.exec(l);
      return m ? [{ total: mib(m[1]!), expected: mib(m[2]!), layer: m[3] === undefined ? undefined : mib(m[3]), layerSize: m[4] === undefined ? undefined : mib(m[4]) }] : [];
    });
    assert.ok(counts.length > 0, drawn.join('\n'));
    for (const c of counts) assert.equal(c.expected, size, 'the bytes expected are the layer tar\'s size');
    // Seen part way, per layer and in total, and growing: never a frozen count while compressing.
    const partWay = counts.filter((c) => c.layer !== undefined && c.layer > 0 && c.layer < size);
    assert.ok(partWay.length > 0, drawn.join('\n'));
    for (const c of partWay) assert.deepEqual([c.layer, c.layerSize], [c.total, size]);
    const totals = counts.map((c) => c.total);
    assert.deepEqual(totals, [...totals].sort((a, b) => a - b), 'the count only grows');
    assert.ok(new Set(totals).size >= 2, drawn.join('\n'));
    assert.ok(drawn.some((l) => /^reading .*: done \([\d.]+ s\)$/.test(l)), 'a line for the reading phase');
    assert.ok(drawn.some((l) => /^pushing to .*progress\/push:v1 [\d.]+ s · uploaded /.test(l)), drawn.join('\n'));
    assert.match(drawn.at(-1)!, /^pushed .*progress\/push:v1: blobs 2 uploaded/);
  });
});
