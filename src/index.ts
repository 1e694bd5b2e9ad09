// The library API: the nouns the CLI is made of, exported one by one with their option and result
// types. Everything else under src/ is internal and may change without notice.

// Errors: every error a caller can act on is a KocacheError with one of these codes.
export { KocacheError, type ErrorCode } from './errors.js';

// OCI nouns.
export { MediaType } from './oci/mediatypes.js';
export { parseDigest, sha256Digest, type Digest } from './oci/digest.js';
export type { Descriptor } from './oci/descriptor.js';
export type { ImageConfig, ImageIndex, ImageManifest } from './oci/manifest.js';
export { formatPlatform, parsePlatform, platformMatches, type Platform } from './oci/platform.js';
export type { BlobOrigin, BlobSource, Pushable, PushableIndex, PushableManifest } from './oci/pushable.js';
export type { BlobSink } from './oci/sink.js';
export { formatReference, parseReference, type Reference } from './reference/reference.js';

// The cache: open it (under a lease, so a concurrent gc spares what you use), then pass it on.
export { openCache, type OpenCache, type OpenCacheOptions } from './cache/open.js';
export { CacheStore } from './cache/store.js';
export { resolveCacheLocation, type CacheLocation } from './cache/location.js';
export { collectGarbage, type GcOptions, type GcReport, type Removal } from './cache/gc.js';

// Compression settings (part of every layer's cache key).
export { DEFAULT_GZIP, type GzipOptions } from './compress/options.js';

// Layers: build one through the cache.
export { parseLayerSource, type LayerSource } from './layer/source.js';
export { excludeFilter, type ExcludeFilter } from './layer/exclude.js';
export { buildLayer, type BuildLayerOptions, type LayerResult } from './layer/build.js';

// Images: a base, layers on top, one manifest per platform and an index over them.
export { loadBase, scratchBase, type BaseImage, type BaseOptions } from './image/base.js';
export { warmBase, type WarmOptions, type WarmResult } from './image/warm.js';
export { buildImage, type BuildImageOptions, type PlatformPlan } from './image/build.js';
export { createdTime, type ConfigOverrides } from './image/config.js';

// Registries.
export { RegistryClient, type ClientOptions } from './remote/client.js';
export { DEFAULT_TIMEOUTS, type Timeouts } from './remote/timeouts.js';
export { BlobPusher } from './remote/blob-pusher.js';
export { pushImage, type PushOptions, type PushResult } from './remote/push.js';

// Publish: the whole pipeline `kocache publish` runs, as one call.
export { publish } from './publish/publish.js';
export type { OutputTarget, PublishLayer, PublishOptions, PublishProgress, PublishResult } from './publish/options.js';
export type { LayerSettings } from './image/sources.js';
export type { CacheRepos } from './regcache/cache.js';

// Files: OCI layouts and image archives.
export { writeLayout, type LayoutWriteOptions, type LayoutWriteResult } from './layout/write.js';
export { writeDockerArchive, type DockerArchiveOptions, type DockerArchiveResult } from './tarball/write.js';
export { loadArchive, type LoadArchiveOptions, type LoadedArchive } from './tarball/load.js';
// What loadArchive gives is a record of stored blobs; this makes it the Pushable that pushImage,
// writeLayout and writeDockerArchive take.
export { archivePushable } from './tarball/pushable.js';
export type { ArchiveImage, ArchiveIndex, ArchiveLayer, ArchiveManifest } from './tarball/plan.js';
export type { ArchiveFormat } from './tarball/detect.js';
export type { CompressProgress } from './tarball/compressor.js';
