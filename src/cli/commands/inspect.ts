import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { KocacheError } from '../../errors.js';
import { type InspectedImage, type Inspection, type ReadBlob, checkedJson, inspectManifests } from '../../image/inspect.js';
import { type ImageSource, parseImageSource } from '../../image/transport.js';
import { REF_NAME, distinctEntries, parseLayoutIndex, selectLayoutEntry } from '../../oci/refname.js';
import { openInFolder, readAll } from '../../util/folder.js';
import { layoutBlobPath, readLayoutIndex } from '../../tarball/layout.js';
import type { Descriptor } from '../../oci/descriptor.js';
import { type Digest, sha256Digest } from '../../oci/digest.js';
import type { ImageConfig, ImageIndex } from '../../oci/manifest.js';
import { MediaType, isIndexMediaType, isManifestMediaType } from '../../oci/mediatypes.js';
import { formatPlatform } from '../../oci/platform.js';
import { formatReference, withIdentifier } from '../../reference/reference.js';
import { RegistryClient } from '../../remote/client.js';
import type { Timeouts } from '../../remote/timeouts.js';
import { detectArchive } from '../../tarball/detect.js';
import { type ArchivePeek, peekArchive } from '../../tarball/peek.js';
import { type Context, type GlobalArgs, type RegistryArgs, globalOptions, makeContext, registryOptions, registryTimeouts } from '../context.js';
import { formatBytes } from '../output.js';

interface InspectArgs extends GlobalArgs, RegistryArgs {
  image: string;
  'insecure-registry'?: string | string[] | undefined;
}

/** Manifests and configs are small; a bigger blob in their place is refused, not read into memory. */
const MAX_JSON = 8 << 20;

export const inspectCommand: CommandModule<object, InspectArgs> = {
  command: 'inspect <image>',
  describe: 'Show an image: manifest, config, layers with sizes (registry, OCI layout or archive)',
  builder: (y: Argv) =>
    registryOptions(globalOptions(y))
      .positional('image', { type: 'string', demandOption: true, describe: 'REGISTRY/REPO[:TAG|@DIGEST], oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE, or a path' })
      .option('insecure-registry', { type: 'string', requiresArg: true, describe: 'HOST[:PORT] reached over plain HTTP, repeatable (loopback always is)' })
      .example('$0 inspect oci:./image:latest', '')
      .example('$0 inspect ghcr.io/you/app:v1 --json | jq \'.images[].layers\'', '') as unknown as Argv<InspectArgs>,
  handler: async (args) => {
    const source = parseImageSource(args.image);
    // Only a registry image uses the cache (credentials' tokens, what blobs were seen): a file or
    // folder is read as it is, and a cache folder that is not there is not made for it.
    const ctx = makeContext(args, source.kind === 'registry' ? {} : { create: false });
    const insecure = args['insecure-registry'] === undefined ? [] : ([] as string[]).concat(args['insecure-registry']).map(String);
    const result = await inspect(args.image, source, ctx, insecure, registryTimeouts(args));
    ctx.out.result(result, describe(result));
  },
};

async function inspect(given: string, source: ImageSource, ctx: Context, insecure: string[], timeouts: Partial<Timeouts>): Promise<Inspection> {
  if (source.kind === 'registry') return inspectRegistry(given, source, ctx, insecure, timeouts);
  if (source.kind === 'layout' || (source.format === undefined && (await detectArchive(source.path)).format === 'layout')) {
    const dir = source.path;
    if (!existsSync(join(dir, 'oci-layout'))) throw new KocacheError('layout', `${dir} is not an OCI image layout (no oci-layout file)`);
    const read: ReadBlob = async (d) => {
      const f = openInFolder(dir, layoutBlobPath(d.digest), { what: `blob ${d.digest}`, max: MAX_JSON, code: 'layout' });
      if (!f) throw new KocacheError('layout', `${dir}: blob ${d.digest} is missing`);
      return readAll(f);
    };
    return inspectIndex(given, parseLayoutIndex(readLayoutIndex(dir), dir), source.tag, read, `oci:${dir}`);
  }
  const peek = await peekArchive(source.path);
  // The bytes decide, as for push; a prefix only picks the view of an archive that has both
  // (docker save since Docker 25 writes an OCI layout beside manifest.json).
  const docker = peek.small.has('manifest.json');
  if (peek.small.has('index.json') && !(docker && source.format === 'docker-archive')) {
    const index = parseLayoutIndex(peek.small.get('index.json')!, given, 'archive');
    const read: ReadBlob = async (d) => {
      const b = peek.small.get(layoutBlobPath(d.digest));
      if (!b) throw new KocacheError('archive', `${given}: blob ${d.digest} is missing or too big for a manifest`);
      return b;
    };
    return inspectIndex(given, index, source.tag, read, source.path);
  }
  if (docker) return inspectDockerArchive(given, peek);
  throw new KocacheError('archive', `${given} is neither an OCI archive (no index.json) nor a docker-archive (no manifest.json)`);
}

async function inspectRegistry(given: string, source: Extract<ImageSource, { kind: 'registry' }>, ctx: Context, insecure: string[], timeouts: Partial<Timeouts>): Promise<Inspection> {
  const ref = source.ref;
  const client = new RegistryClient({ insecureRegistries: insecure, jobs: ctx.jobs, warn: (m) => ctx.out.warn(m), cache: ctx.cache, timeouts });
  try {
    const top = await client.getManifest(ref);
    const read: ReadBlob = async (d) => {
      if (isManifestMediaType(d.mediaType) || isIndexMediaType(d.mediaType)) return (await client.getManifest(withIdentifier(ref, { digest: d.digest }))).bytes;
      if (d.size > MAX_JSON) throw new KocacheError('manifest', `${formatReference(ref)}: config ${d.digest} is ${d.size} bytes, too big for a config`);
      const parts: Uint8Array[] = [];
      for await (const chunk of client.getBlob(ref, d)) parts.push(chunk);
      return Buffer.concat(parts);
    };
    const doc = checkedJson<{ annotations?: Record<string, string> }>(top.bytes, top.descriptor, given);
    const images = await inspectManifests(top.descriptor, top.bytes, read, given, () => (ref.tag ? [ref.tag] : []));
    return { source: given, mediaType: top.descriptor.mediaType, digest: top.descriptor.digest, annotations: doc.annotations ?? {}, images };
  } finally {
    await client.close();
  }
}

/** A layout's index.json (from a folder or an OCI archive): one entry when a tag names it, else every entry. */
async function inspectIndex(given: string, index: ImageIndex, tag: string | undefined, read: ReadBlob, where: string): Promise<Inspection> {
  const distinct = distinctEntries(index);
  const entries = tag !== undefined || distinct.length === 1 ? [selectLayoutEntry(index, tag, where)] : distinct;
  const tagsOf = (d: Descriptor) => index.manifests.filter((m) => m.digest === d.digest).map((m) => m.annotations?.[REF_NAME]).filter((t): t is string => t !== undefined);
  const images: InspectedImage[] = [];
  for (const e of entries) {
    const imgs = await inspectManifests(e, await read(e), read, where, tagsOf);
    // Images under an index inherit the names of the index entry that holds them.
    for (const img of imgs) if (img.tags.length === 0) img.tags = tagsOf(e);
    images.push(...imgs);
  }
  const one = entries.length === 1 ? entries[0]! : undefined;
  return {
    source: given,
    mediaType: one?.mediaType ?? MediaType.OciIndex,
    digest: one?.digest ?? null,
    annotations: (one ? undefined : index.annotations) ?? {},
    images,
  };
}

/** docker save's manifest.json: no manifest digests, layers as (often uncompressed) tars. */
function inspectDockerArchive(given: string, peek: ArchivePeek): Inspection {
  let items: { Config?: unknown; RepoTags?: unknown; Layers?: unknown }[];
  try {
    items = JSON.parse(peek.small.get('manifest.json')!.toString('utf8')) as typeof items;
  } catch {
    throw new KocacheError('archive', `${given}: manifest.json is not JSON`);
  }
  if (!Array.isArray(items) || items.length === 0) throw new KocacheError('archive', `${given}: manifest.json lists no image`);
  const images = items.map((item): InspectedImage => {
    const configName = typeof item.Config === 'string' ? item.Config : '';
    const configBytes = peek.small.get(configName);
    if (!configBytes) throw new KocacheError('archive', `${given}: config ${JSON.stringify(configName)} is missing`);
    const configDigest = sha256Digest(configBytes);
    const content = checkedJson<ImageConfig>(configBytes, { mediaType: MediaType.DockerConfig, digest: configDigest, size: configBytes.length }, given);
    const diffids = content.rootfs?.diff_ids ?? [];
    const layers = (Array.isArray(item.Layers) ? item.Layers : []).map((name: unknown, i: number) => {
      const path = String(name);
      const gz = peek.gzipped.has(path);
      const diffid = diffids[i] ?? null;
      const blob = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(path);
      return {
        mediaType: gz ? MediaType.DockerLayerGzip : 'application/vnd.docker.image.rootfs.diff.tar',
        digest: blob ? (`sha256:${blob[1]}` as Digest) : gz ? null : diffid,
        size: peek.sizes.get(path) ?? 0,
        diffid,
      };
    });
    return {
      platform: content.os && content.architecture ? formatPlatform({ os: content.os, architecture: content.architecture, ...(content.variant ? { variant: content.variant } : {}) }) : null,
      mediaType: 'docker-archive',
      digest: null,
      size: null,
      annotations: {},
      tags: Array.isArray(item.RepoTags) ? item.RepoTags.map(String) : [],
      manifest: null,
      config: { mediaType: MediaType.DockerConfig, digest: configDigest, size: configBytes.length, content },
      layers,
      layersSize: layers.reduce((n, l) => n + l.size, 0),
    };
  });
  return { source: given, mediaType: 'docker-archive', digest: null, annotations: {}, images };
}

const KINDS: Record<string, string> = {
  [MediaType.OciIndex]: 'OCI index',
  [MediaType.OciManifest]: 'OCI manifest',
  [MediaType.DockerManifestList]: 'Docker manifest list',
  [MediaType.DockerManifest]: 'Docker manifest',
  'docker-archive': 'docker-archive',
};

/** The human form: one block per image, then one summary line. */
function describe(r: Inspection): string {
  const lines: string[] = [`${r.source}: ${KINDS[r.mediaType] ?? r.mediaType}${r.digest ? ` ${r.digest}` : ''}`];
  for (const [k, v] of Object.entries(r.annotations)) lines.push(`  ${k}=${v}`);
  for (const img of r.images) {
    const head = [img.platform ?? 'unknown platform', img.digest ?? '', img.size !== null ? `(${KINDS[img.mediaType] ?? img.mediaType}, ${formatBytes(img.size)})` : ''];
    if (img.tags.length) head.push(`tags: ${img.tags.join(', ')}`);
    lines.push(head.filter(Boolean).join('  '));
    for (const [k, v] of Object.entries(img.annotations)) lines.push(`  ${k}=${v}`);
    const c = img.config.content.config ?? {};
    lines.push(`  config   ${img.config.digest}  ${formatBytes(img.config.size)}${img.config.content.created ? `  created ${img.config.content.created}` : ''}`);
    const settings: string[] = [];
    if (c.Entrypoint) settings.push(`entrypoint ${JSON.stringify(c.Entrypoint)}`);
    if (c.Cmd) settings.push(`cmd ${JSON.stringify(c.Cmd)}`);
    if (c.WorkingDir) settings.push(`workdir ${c.WorkingDir}`);
    if (c.User) settings.push(`user ${c.User}`);
    if (c.Env?.length) settings.push(`env ${c.Env.join(' ')}`);
    if (c.Labels && Object.keys(c.Labels).length) settings.push(`labels ${Object.entries(c.Labels).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    for (const s of settings) lines.push(`           ${s}`);
    img.layers.forEach((l, i) => {
      lines.push(`  layer ${String(i + 1).padEnd(2)} ${l.digest ?? `(diff ${l.diffid ?? 'unknown'})`}  ${formatBytes(l.size)}`);
    });
  }
  const layerCount = r.images.reduce((n, i) => n + i.layers.length, 0);
  const bytes = r.images.reduce((n, i) => n + i.layersSize, 0);
  lines.push(`${r.images.length} image${r.images.length === 1 ? '' : 's'}, ${layerCount} layer${layerCount === 1 ? '' : 's'}, ${formatBytes(bytes)} of layers`);
  return lines.join('\n');
}
