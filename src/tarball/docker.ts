import { KocacheError } from '../errors.js';
import type { ImageConfig } from '../oci/manifest.js';
import { isObject, parseJsonFile } from './json.js';
import type { ArchiveContents } from './scan.js';
import type { ImagePlan } from './plan.js';

/** One entry of docker save's manifest.json. */
interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

/**
 * A docker-archive (`docker save`, Nix dockerTools, Bazel): manifest.json names a config file and
 * the layer files in order. Layers may be plain or gzipped tars; which is told by their bytes.
 */
export function planDockerArchive(contents: ArchiveContents): ImagePlan {
  const name = contents.name;
  const manifestFile = contents.need('manifest.json', 'the docker archive');
  if (!manifestFile.bytes) throw new KocacheError('archive', `${name}: manifest.json is not a JSON document of reasonable size`);
  const doc = parseJsonFile<unknown>(manifestFile.bytes, `${name}: manifest.json`);
  if (!Array.isArray(doc) || doc.length === 0) throw new KocacheError('archive', `${name}: manifest.json lists no image`);
  if (doc.length > 1) {
    throw new KocacheError('archive', `${name}: manifest.json lists ${doc.length} images; kocache pushes archives that hold one (save them one at a time)`);
  }
  const entry = doc[0] as unknown;
  if (!isObject(entry) || typeof entry.Config !== 'string' || !Array.isArray(entry.Layers) || !entry.Layers.every((l) => typeof l === 'string')) {
    throw new KocacheError('archive', `${name}: manifest.json entry needs a Config file name and a Layers list`);
  }
  const m = entry as unknown as DockerManifestEntry;
  const config = contents.need(m.Config, 'manifest.json');
  if (!config.bytes) throw new KocacheError('archive', `${name}: config ${m.Config} is too big to be an image config`);
  const configJson = parseJsonFile<ImageConfig>(config.bytes, `${name}: config ${m.Config}`);
  return {
    kind: 'manifest',
    manifest: {
      what: name,
      config,
      configJson,
      layers: m.Layers.map((path) => ({ file: contents.need(path, 'manifest.json'), what: `${name}: layer ${path}`, opaque: false })),
    },
  };
}
