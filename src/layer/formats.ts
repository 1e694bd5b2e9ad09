// The format versions of what a layer build writes, side by side. Bump one when its writer gives
// other bytes for the same input, so that cache entries made by the old one miss.

/** The tar writer (src/layer/tar.ts): part of every tar spec, so of every layer key. */
export const TAR_FORMAT = 'tar1';

/**
 * What `fingerprint` hashes and how: stat caches keep fingerprints (the listing file) and trust
 * only those of this format. A test pins the output on fixed input, so a change cannot go
 * unnoticed.
 */
export const FINGERPRINT_FORMAT = 1;
