// The library API: the same nouns the CLI uses.
export * from './errors.js';
export * from './oci/digest.js';
export * from './oci/descriptor.js';
export * from './oci/manifest.js';
export * from './oci/mediatypes.js';
export * from './oci/platform.js';
export * from './cache/store.js';
export * from './cache/keys.js';
export * from './cache/location.js';
export * from './compress/gzip.js';
export * from './layer/build.js';
export * from './layer/source.js';
