import { TAR_FORMAT } from './formats.js';

/** Everything besides the input that changes a layer's tar bytes. */
export interface TarOptions {
  /** Absolute destination path inside the image, without a trailing slash ('' means /). */
  dest: string;
  /** mtime of every entry, in seconds (0, or SOURCE_DATE_EPOCH). */
  mtime: number;
  /** Owner of every entry (default 0:0). */
  owner?: { uid: number; gid: number } | undefined;
  /**
   * 'normalize' (default): 0755 for directories and owner-executable files, else 0644, whatever
   * the umask of the machine. 'keep': the permission bits as on disk (setuid and sticky included).
   */
  mode?: LayerModePolicy | undefined;
  /** sha256 of the exclude patterns (src/layer/exclude.ts), when any. */
  exclude?: string | undefined;
}

export type LayerModePolicy = 'normalize' | 'keep';


/**
 * Names the tar settings for the cache key: the destination path (ko forgot it: ko#1704), the
 * mode and owner policy, the mtime, and the writer's format version.
 */
export function tarSpec(o: TarOptions): string {
  const owner = o.owner ? `${o.owner.uid}:${o.owner.gid}` : '0:0';
  const mode = o.mode === 'keep' ? 'keep' : 'norm';
  const exclude = o.exclude ? `,exclude=${o.exclude}` : '';
  return `${TAR_FORMAT},dest=${o.dest || '/'},mode=${mode},owner=${owner},mtime=${o.mtime}${exclude}`;
}
