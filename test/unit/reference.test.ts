import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KocacheError } from '../../src/errors.js';
import { formatReference, parseReference } from '../../src/reference/reference.js';

const D = `sha256:${'a'.repeat(64)}`;

test('parseReference applies Docker defaults and keeps what is given', () => {
  const table: [string, object][] = [
    ['alpine', { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' }],
    ['alpine:3.20', { registry: 'docker.io', repository: 'library/alpine', tag: '3.20' }],
    ['user/app', { registry: 'docker.io', repository: 'user/app', tag: 'latest' }],
    ['docker.io/alpine', { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' }],
    ['index.docker.io/library/alpine:edge', { registry: 'docker.io', repository: 'library/alpine', tag: 'edge' }],
    ['registry-1.docker.io/user/app:v1', { registry: 'docker.io', repository: 'user/app', tag: 'v1' }],
    ['ghcr.io/org/team/app:v1.2.3-rc_1', { registry: 'ghcr.io', repository: 'org/team/app', tag: 'v1.2.3-rc_1' }],
    ['127.0.0.1:5000/app', { registry: '127.0.0.1:5000', repository: 'app', tag: 'latest' }],
    ['127.0.0.1:5000/x:Bad.Tag_1', { registry: '127.0.0.1:5000', repository: 'x', tag: 'Bad.Tag_1' }],
    ['localhost/app:x', { registry: 'localhost', repository: 'app', tag: 'x' }],
    ['localhost:5000/a/b', { registry: 'localhost:5000', repository: 'a/b', tag: 'latest' }],
    ['[::1]:5000/app:v1', { registry: '[::1]:5000', repository: 'app', tag: 'v1' }],
    [`gcr.io/p/app@${D}`, { registry: 'gcr.io', repository: 'p/app', digest: D }],
    [`gcr.io/p/app:v1@${D}`, { registry: 'gcr.io', repository: 'p/app', tag: 'v1', digest: D }],
    [`alpine@${D}`, { registry: 'docker.io', repository: 'library/alpine', digest: D }],
    ['example.com/a__b/c-d/e.f/g--h:TAG', { registry: 'example.com', repository: 'a__b/c-d/e.f/g--h', tag: 'TAG' }],
    ['Example.COM:443/app', { registry: 'Example.COM:443', repository: 'app', tag: 'latest' }],
  ];
  for (const [input, want] of table) assert.deepEqual(parseReference(input), want, input);
});

test('formatReference writes the fully qualified form, and parse(format(r)) is r', () => {
  assert.equal(formatReference(parseReference('alpine')), 'docker.io/library/alpine:latest');
  assert.equal(formatReference(parseReference(`ghcr.io/a/b:v1@${D}`)), `ghcr.io/a/b:v1@${D}`);
  assert.equal(formatReference(parseReference(`ghcr.io/a/b@${D}`)), `ghcr.io/a/b@${D}`);
  for (const s of ['localhost:5000/x/y:z', `127.0.0.1:1/r@${D}`, 'docker.io/library/busybox:1']) {
    assert.deepEqual(parseReference(formatReference(parseReference(s))), parseReference(s));
  }
});

test('parseReference rejects every malformed reference with a one-line KocacheError', () => {
  const table: [string, RegExp][] = [
    ['', /empty/],
    ['   ', /empty/],
    ['Alpine', /must be lowercase/],
    ['docker.io/Library/alpine', /must be lowercase/],
    ['alpine:', /bad tag/],
    ['alpine:-x', /bad tag/],
    ['alpine:.x', /bad tag/],
    [`alpine:${'t'.repeat(129)}`, /bad tag/],
    ['alpine:a/b', /bad registry "alpine:a" \(a port is digits\), or bad tag "a\/b" \(a tag cannot contain '\/'\)$/],
    // The ':' after the registry starts a tag, whatever its case; the '/' in it is what is wrong.
    ['127.0.0.1:5000/x:Bad/Tag', /: bad tag "Bad\/Tag": a tag cannot contain '\/'$/],
    ['ghcr.io/org/app:v1/extra', /: bad tag "v1\/extra": a tag cannot contain '\/'$/],
    [`localhost:5000/a:b/c@${D}`, /: bad tag "b\/c": a tag cannot contain '\/'$/],
    ['alpine:tag!', /bad tag/],
    ['alpine@sha256:abc', /bad digest/],
    [`alpine@sha512:${'a'.repeat(128)}`, /bad digest/],
    [`alpine@sha256:${'A'.repeat(64)}`, /bad digest/],
    ['alpine@', /bad digest/],
    ['ghcr.io/', /no repository/],
    ['ghcr.io//app', /empty path component/],
    ['app/', /empty path component/],
    ['-app', /bad repository component/],
    ['library/a..b', /bad repository component/], ['a..b/app', /bad registry/],
    ['ex_ample.com:5000/app', /bad registry/],
    ['host:port/app', /bad registry "host:port" \(a port is digits\)/],
    ['ex_ample.com/app', /bad registry "ex_ample\.com"$/],
    ['with space', /white space/],
    [':tag', /no repository/],
    [`example.com/${'a'.repeat(250)}`, /longer than 255/],
  ];
  for (const [input, why] of table) {
    assert.throws(() => parseReference(input), (err: unknown) => {
      assert.ok(err instanceof KocacheError, `${input}: a KocacheError`);
      assert.match(err.message, why, input);
      assert.ok(err.message.startsWith('invalid image reference'), input);
      assert.ok(!err.message.includes('\n'), `${input}: one line`);
      return true;
    });
  }
});

test('a URL with credentials given as a reference: the password is not printed back', () => {
  for (const input of ['https://user:s3cr3t-t0ken@ghcr.io/you/app', 'user:s3cr3t-t0ken@ghcr.io/you/app', 'oauth2:s3cr3t-t0ken@host', 'https://bob:ab/s3cr3t-t0ken@reg.example.com/repo']) {
    assert.throws(() => parseReference(input), (err: unknown) => {
      assert.ok(err instanceof KocacheError);
      assert.ok(!err.message.includes('s3cr3t-t0ken'), err.message);
      assert.match(err.message, /^invalid image reference ".*:\*\*\*@[^"]*": it holds credentials/);
      return true;
    });
  }
  // A one-letter password is starred where it stands, not wherever that letter occurs.
  assert.throws(() => parseReference('https://bob:a@reg.example.com/Repo'), /invalid image reference "https:\/\/bob:\*\*\*@reg\.example\.com\/Repo": it holds credentials/);
  // A tag before a digest is not a password.
  assert.throws(() => parseReference('app:v1@sha256:bad'), /app:v1@sha256:bad/);
});

test('an image source: an archive file name is a path, a tag that ends like one is not', async () => {
  const { parseImageSource } = await import('../../src/image/transport.js');
  assert.equal(parseImageSource('gone.tar', '/tmp').kind, 'archive');
  assert.equal(parseImageSource('gone.tar.gz', '/tmp').kind, 'archive');
  assert.deepEqual(parseImageSource('reg.example.com/app:1.0.tar', '/tmp'), { kind: 'registry', ref: parseReference('reg.example.com/app:1.0.tar') });
});
