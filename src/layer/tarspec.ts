import { TAR_FORMAT } from './formats.js';

/** Everything besides the input that changes a layer's tar bytes. */
export interface TarOptions {
  /** Absolute destination path inside the image, without a trailing slash ('' means /). */
  dest: string;
  /** mtime of every entry, in seconds (0, or SOURCE_DATE_EPOCH). */
  mtime: number;
}


/**
 * Names the tar settings for the cache key: the destination path (ko forgot it: ko#1704), the
 * mode and owner policy, the mtime, and the writer's format version.
 */
export function tarSpec(o: TarOptions): string {
  return `${TAR_FORMAT},dest=${o.dest || '/'},mode=norm,owner=0:0,mtime=${o.mtime}`;
}
