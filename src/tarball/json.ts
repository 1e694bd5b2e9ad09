import { KocacheError } from '../errors.js';

/** Parses a JSON document from an archive; malformed JSON is a user error naming the file. */
export function parseJsonFile<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as T;
  } catch (err) {
    throw new KocacheError('archive', `${what} is not valid JSON (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
