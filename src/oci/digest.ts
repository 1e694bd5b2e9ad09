import { createHash } from 'node:crypto';
import { KocacheError } from '../errors.js';

/** An OCI content digest, always `sha256:<64 lowercase hex>` in kocache. */
export type Digest = `sha256:${string}`;

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function isDigest(s: string): s is Digest {
  return DIGEST_RE.test(s);
}

export function parseDigest(s: string, what = 'digest'): Digest {
  if (!isDigest(s)) {
    throw new KocacheError('invalid-digest', `invalid ${what} ${JSON.stringify(s)}: want sha256: and 64 lowercase hex digits`);
  }
  return s;
}

export function digestHex(d: Digest): string {
  return d.slice('sha256:'.length);
}

export function sha256Digest(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** cacache speaks Subresource Integrity (`sha256-<base64>`); OCI speaks `sha256:<hex>`. */
export function digestToIntegrity(d: Digest): string {
  return `sha256-${Buffer.from(digestHex(d), 'hex').toString('base64')}`;
}

export function integrityToDigest(integrity: string): Digest {
  const m = /^sha256-([A-Za-z0-9+/=]+)/.exec(integrity.trim());
  if (!m || m[1] === undefined) {
    throw new KocacheError('invalid-digest', `unexpected integrity ${integrity}: kocache stores sha256 only`);
  }
  return `sha256:${Buffer.from(m[1], 'base64').toString('hex')}`;
}
