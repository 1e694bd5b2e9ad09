import type { Digest } from '../oci/digest.js';
import type { Platform } from '../oci/platform.js';
import { formatPlatform } from '../oci/platform.js';

/**
 * Every index key kocache writes, in one place so the layout in docs/cache.md is the layout on disk.
 *
 *   bin/<import-path>/<platform>/buildid/<build-id>/<tar-spec>   -> compressed blob, {diffid, ...}
 *   bin/<import-path>/<platform>/diffid/<diffid>/<compression>   -> compressed blob, {descriptor}
 *   layer/diffid/<diffid>/<compression>                          -> compressed blob, {descriptor}
 *   tar/<diffid>                                                 -> uncompressed layer tar
 *   archive/<sha256 of archive file>/<compression>               -> top manifest, {the imported image}
 *   img/<registry>/<repo>/...                                    -> base-image manifests, configs, layers
 *   blocks/<digest>                                              -> that compressed layer, {its block map}
 *   blocks-recent/<lineage>                                      -> newest layer, {recent layers' digests}
 */
export function binNamespace(importPath: string, platform: Platform): string {
  return `bin/${importPath}/${formatPlatform(platform)}`;
}

/** build id -> diffid. `tarSpec` names every tar option that changes the layer's bytes. */
export function buildIdKey(namespace: string, buildId: string, tarSpec: string): string {
  return `${namespace}/buildid/${buildId}/${tarSpec}`;
}

/** diffid -> compressed descriptor, one per compression setting. */
export function diffIdKey(namespace: string, diffid: Digest, compression: string): string {
  return `${namespace}/diffid/${diffid}/${compression}`;
}

/** Namespace for layers that come from archives or registries rather than from a build. */
export const LAYER_NAMESPACE = 'layer';

/** An uncompressed layer tar kept by diffid (archives keep these; builds do not). */
export function tarKey(diffid: Digest): string {
  return `tar/${diffid}`;
}

/**
 * Repositories of one registry a blob was last seen in (pushed there, or pulled from there), so
 * a push to another repository of that registry can mount it instead of uploading it. The
 * record points at the blob's digest; the blob itself need not be in the cache.
 */
export function seenKey(registry: string, digest: Digest): string {
  return `seen/${registry}/${digest}`;
}

/**
 * An image archive seen before -> the image it was imported as (every blob in the store).
 * `archiveId` is the sha256 of the archive file, or `layout-<sha256 of index.json>` for a layout
 * directory; the compression setting is part of the key because it decides the layer blobs.
 */
export function archiveKey(archiveId: string, compression: string): string {
  return `archive/${archiveId}/${compression}`;
}

/**
 * A base image's tag as last resolved -> its top manifest (index or image manifest) blob, with
 * `{descriptor}`. Used when the base registry cannot be reached, or with --offline.
 */
export function imageTagKey(registry: string, repository: string, tag: string): string {
  return `img/${registry}/${repository}/tag/${tag}`;
}

/**
 * A base image's blob (index, manifest, config or layer) by digest -> that blob, with
 * `{descriptor}`. Keyed by repository too, so a cached layer knows where it can be mounted from.
 */
export function imageBlobKey(registry: string, repository: string, digest: Digest): string {
  return `img/${registry}/${repository}/blob/${digest}`;
}

/**
 * A compressed layer -> the map of its deflate blocks (compress/stitch.ts), so a later layer can
 * copy them. The record points at the layer itself: it lives and dies with it.
 */
export function blockMapKey(digest: Digest): string {
  return `blocks/${digest}`;
}

/**
 * The layers last compressed for one lineage (a namespace and destination), newest first: where a
 * new layer of that lineage looks for blocks to copy.
 */
export function recentLayersKey(lineage: string): string {
  return `blocks-recent/${lineage}`;
}
