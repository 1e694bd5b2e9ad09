import { KocacheError } from '../errors.js';

/** The platform an image runs on (image-spec image-index.md). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

// Go's GOOS and GOARCH lists: a platform outside them is almost always a typo.
const KNOWN_OS = new Set([
  'aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'illumos', 'ios', 'js', 'linux', 'netbsd',
  'openbsd', 'plan9', 'solaris', 'wasip1', 'windows',
]);
const KNOWN_ARCH = new Set([
  '386', 'amd64', 'arm', 'arm64', 'loong64', 'mips', 'mipsle', 'mips64', 'mips64le', 'ppc64',
  'ppc64le', 'riscv64', 's390x', 'wasm',
]);
const VARIANT_RE = /^[a-z0-9.]+$/;

/** Parses `os/arch[/variant]`, e.g. `linux/arm64` or `linux/arm/v7`. */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  const bad = (why: string) =>
    new KocacheError('platform', `invalid platform ${JSON.stringify(s)}: ${why} (want os/arch[/variant], e.g. linux/amd64)`, { exitCode: 2 });
  if (parts.length < 2 || parts.length > 3) throw bad('wrong number of parts');
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  if (!KNOWN_OS.has(os)) throw bad(`unknown os ${JSON.stringify(os)}`);
  if (!KNOWN_ARCH.has(architecture)) throw bad(`unknown architecture ${JSON.stringify(architecture)}`);
  if (variant !== undefined && !VARIANT_RE.test(variant)) throw bad(`bad variant ${JSON.stringify(variant)}`);
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

export function formatPlatform(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/**
 * Whether `have` (from an index) satisfies `want`. A missing variant on either side matches, and
 * arm64's default variant v8 equals none, as containerd's matcher treats them.
 */
export function platformMatches(want: Platform, have: Platform | undefined): boolean {
  if (!have) return false;
  if (want.os !== have.os || want.architecture !== have.architecture) return false;
  const norm = (p: Platform) => (p.architecture === 'arm64' && p.variant === 'v8' ? undefined : p.variant);
  const wv = norm(want);
  const hv = norm(have);
  return wv === undefined || hv === undefined || wv === hv;
}

/**
 * Platforms for a message: all of them when few, else how many and the first few by name (an
 * index may list a thousand; the line naming them must stay one line).
 */
export function describePlatforms(names: string[], few = 4): string {
  const distinct = [...new Set(names)];
  if (distinct.length === 0) return 'none';
  if (distinct.length <= few) return distinct.join(', ');
  return `${distinct.length} platforms, among them ${distinct.slice(0, few).join(', ')}`;
}
