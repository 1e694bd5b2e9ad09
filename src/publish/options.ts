import type { CacheStore } from '../cache/store.js';
import type { GzipOptions } from '../compress/options.js';
import type { ConfigOverrides } from '../image/config.js';
import type { LayerSettings } from '../image/sources.js';
import type { Digest } from '../oci/digest.js';
import type { Platform } from '../oci/platform.js';
import type { Reference } from '../reference/reference.js';
import type { CacheRepos } from '../regcache/cache.js';
import type { RegistryClient } from '../remote/client.js';
import type { Timeouts } from '../remote/timeouts.js';

/** Where `publish()` sends the image: a registry, an OCI image layout folder, or a docker-archive tar. */
export type OutputTarget =
  | { kind: 'registry' }
  | { kind: 'oci'; path: string; tag?: string | undefined }
  | { kind: 'docker-archive'; path: string };

/** What `publish()` builds and where it sends it. Only `cache`, `base` and `layers` are required. */
export interface PublishOptions {
  /** The open cache (openCache), which the caller closes. */
  cache: CacheStore;
  /** The base image: a reference (a digest pins it), or 'scratch' for none. */
  base: string;
  /**
   * One layer each, in order: `SRC[:DEST[:UID:GID]]`, SRC relative to `cwd`. `{os}`, `{arch}`,
   * `{variant}` and `{platform}` (linux_arm64) are replaced per platform.
   */
  layers: string[];
  /** Default linux/amd64. Several make an OCI index; 'all' takes every platform of the base. */
  platforms?: Platform[] | 'all' | undefined;
  /** The repository to push to; needed unless `output` is a file. Its tag is used when `tags` is not given. */
  repo?: Reference | undefined;
  /**
   * Every tag the image gets (one digest), the first one first; default the tag of `repo`, else
   * latest. With an OCI layout and no `output.tag`, the names of its index.json entries. A
   * docker-archive names its image REPO:TAG, so without `repo` it has no names and these go unused.
   */
  tags?: string[] | undefined;
  /** Default: push to `repo`. Else an OCI image layout folder or a docker-archive file. */
  output?: OutputTarget | undefined;
  /** Namespace of Go build IDs in the cache; default REGISTRY/REPO of `repo`, else local/<name of the first SRC>. */
  importPath?: string | undefined;
  /** Entrypoint, cmd, env, workdir, user, labels: set over the base's config. */
  config?: ConfigOverrides | undefined;
  /** On every manifest and on the index. */
  annotations?: Record<string, string> | undefined;
  /** Owner, mode and excludes of every layer, or of each layer in order (part of each layer's cache key). */
  layerSettings?: LayerSettings | LayerSettings[] | undefined;
  /** Seconds since 1970 (SOURCE_DATE_EPOCH): layer mtimes, config and history times; default 0. */
  sourceDateEpoch?: number | undefined;
  /** Take the base from the cache only; never contact its registry. */
  offline?: boolean | undefined;
  /** HOST[:PORT] reached over plain HTTP (loopback always is). */
  insecureRegistries?: string[] | undefined;
  timeouts?: Partial<Timeouts> | undefined;
  /** A registry client of the caller's, used for the base and the target, and not closed; by default publish makes and closes one. */
  client?: RegistryClient | undefined;
  /** The registry cache: repositories of shared layer records, read and written. */
  registryCache?: CacheRepos | undefined;
  /** Parallel compression and transfer jobs; default the number of cores. */
  jobs?: number | undefined;
  /** Layer compression (part of each layer's cache key); default gzip at its default level. */
  compression?: GzipOptions | undefined;
  /** Where relative layer sources and output paths are resolved; default the process's. */
  cwd?: string | undefined;
  warn?: ((message: string) => void) | undefined;
  onProgress?: ((e: PublishProgress) => void) | undefined;
  /**
   * Called once the image is delivered, before publish() waits for the registry cache's record
   * writes still under way; an error it throws fails the publish.
   */
  onDelivered?: ((result: PublishResult) => void) | undefined;
}

/**
 * Which layer a progress event is about: its `SRC:DEST` as given and the platform it is built for.
 * A layer whose files are the same for every platform is tarred and uploaded once, reported under
 * the first platform that asked for it.
 */
export interface PublishLayer {
  spec: string;
  platform: Platform;
}

/** What a publish is doing, as it does it. */
export type PublishProgress =
  /** A phase starts: the base ('base'), the layers ('layers', with how many), the delivery ('push' or 'write'). */
  | { type: 'phase'; phase: 'base' | 'layers' | 'push' | 'write'; total?: number }
  /** Every layer is ready: how many were built and how many came from a cache. */
  | { type: 'layers-done'; built: number; cached: number }
  /** One layer is ready (built now, or found in a cache). */
  | { type: 'layer'; platform: Platform; spec: string; cached: boolean }
  /** Bytes of a layer's sources read. */
  | { type: 'read'; bytes: number; layer: PublishLayer }
  /** A layer must be tarred: the bytes of its files, which 'read' events will count. */
  | { type: 'expect'; bytes: number; layer: PublishLayer }
  /** A blob's upload starts (its size), or bytes of it were sent (a retry is not told again); `layer` is set for a layer built or cached now (not a base layer or a config). */
  | { type: 'upload-start'; size: number; layer?: PublishLayer | undefined }
  | { type: 'uploaded'; bytes: number; layer?: PublishLayer | undefined };

export interface PublishResult {
  /** `REGISTRY/REPO@sha256:...` (or the digest alone for a file with no `repo`). */
  reference: string;
  digest: Digest;
  tags: string[];
  platforms: { platform: string; digest: Digest }[];
  /** 'registry', `oci:PATH` or `docker-archive:PATH`. */
  output: string;
  /** Layers built now, found in a cache, and taken from the base. */
  layers: { built: number; cached: number; reused: number };
  uploaded: number;
  mounted: number;
  present: number;
  /** Blobs written to an OCI layout or a docker-archive. */
  written: number;
  bytesUploaded: number;
  /** Bytes of the docker-archive written; 0 for other outputs. */
  bytesWritten: number;
  /** The image id `docker load` gives a docker-archive; null for other outputs. */
  imageId: string | null;
}

/** A tag as registries take it. */
export function isValidTag(tag: string): boolean {
  return /^[\w][\w.-]{0,127}$/.test(tag);
}
