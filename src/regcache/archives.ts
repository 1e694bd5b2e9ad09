import { recordKey } from './record.js';

/** The key of an archive record: the local archive key (sha256 of the archive, compression setting). */
export function archiveRecordKey(localKey: string): string {
  return recordKey('archive', [localKey]);
}
