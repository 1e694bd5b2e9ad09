import { type Digest, isDigest } from './digest.js';
import type { Platform } from './platform.js';

/** An OCI content descriptor (image-spec descriptor.md). */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
}

/** Whether a value read back from somewhere (the cache's index, say) has a descriptor's required fields. */
export function isDescriptor(v: unknown): v is Descriptor {
  if (typeof v !== 'object' || v === null) return false;
  const d = v as { mediaType?: unknown; digest?: unknown; size?: unknown };
  return typeof d.mediaType === 'string' && typeof d.digest === 'string' && isDigest(d.digest)
    && typeof d.size === 'number' && Number.isSafeInteger(d.size) && d.size >= 0;
}
