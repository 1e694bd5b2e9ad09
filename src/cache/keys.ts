import type { Digest } from '../oci/digest.js';
import type { Platform } from '../oci/platform.js';
import { formatPlatform } from '../oci/platform.js';

/**
 * Every index key kocache writes, in one place so the layout in docs/cache.md is the layout on disk.
 *
 *   tree/<fingerprint format>/<fingerprint>/<tar-spec>          -> compressed blob, {diffid, tarSpec}
 *   bin/<import-path>/<platform>/buildid/<build-id>/<tar-spec>   -> compressed blob, {diffid, tarSpec}
 *   bin/diffid/<diffid>/<compression>                            -> compressed blob, {diffid, compression, descriptor}
 *   layer/diffid/<diffid>/<compression>                          -> compressed blob, {descriptor}
 *   tar/<diffid>                                                 -> uncompressed layer tar
 *   archive/<sha256 of archive file>/<compression>               -> top manifest, {the imported image}
 *   img/<registry>/<repo>/...                                    -> base-image manifests, configs, layers
 *   blocks/<digest>                                              -> that compressed layer, {its block map}
 *   blocks-recent/<lineage>                                      -> newest layer, {recent layers' digests}
 *
 * The rule for a built layer: its keys hold exactly what decides its bytes. A fingerprint is the
 * content itself, so its key is the same for every repository, platform and import path
 * (`tree/`). An id that only vouches for the content (a caller's --build-id, a Go build ID) is
 * trusted within its import path and platform only (`bin/<import-path>/<platform>/`), where no
 * other project can have given the same id to other bytes. The tar settings, destination path
 * included (ko#1704), are in every build-id key; the compression settings in every diffid key.
 */

/**
 * Content key: a fingerprint (`fp:<hex>`, src/layer/fingerprint.ts) with its format version and
 * the tar settings, so an entry of another fingerprint or tar writer never answers.
 */
export function treeKey(fingerprintFormat: number, fingerprint: string, tarSpec: string): string {
  return `tree/${fingerprintFormat}/${fingerprint}/${tarSpec}`;
}

/**
 * What `built/` marks for content keys: one mark per tar setting (destination, mtime, format), so
 * a build to a destination never built to before knows that no `tree/` record can answer it.
 */
export function treeMark(tarSpec: string): string {
  return `tree/${tarSpec}`;
}

/** Where vouched-for build ids of one import path and platform are kept. */
export function binNamespace(importPath: string, platform: Platform): string {
  return `bin/${importPath}/${formatPlatform(platform)}`;
}

/** A vouched-for build id -> diffid. `tarSpec` names every tar option that changes the layer's bytes. */
export function buildIdKey(namespace: string, buildId: string, tarSpec: string): string {
  return `${namespace}/buildid/${buildId}/${tarSpec}`;
}

/** Namespace of the diffid records of built layers (`bin/diffid/...`): one for all builds. */
export const BUILT_NAMESPACE = 'bin';

/**
 * diffid -> compressed descriptor, one per compression setting. Built layers use
 * BUILT_NAMESPACE; the first key scheme used the build's `bin/<import-path>/<platform>`, which
 * is still read (never written) so that a cache filled before keeps answering what it did.
 */
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
