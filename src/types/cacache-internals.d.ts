// cacache's own modules that kocache loads one by one (src/cache/store.ts says why); @types/cacache
// describes only the package's front door. They are CommonJS, so an import() sees module.exports
// as `default` (both under Node and in the bundled CLI).
declare module 'cacache/lib/entry-index.js' {
  interface IndexEntry {
    key: string;
    integrity: string | null;
    path?: string;
    size?: number;
    time: number;
    metadata?: unknown;
  }
  const entryIndex: {
    find(cache: string, key: string): Promise<IndexEntry | null>;
    insert(cache: string, key: string, integrity: string, opts: { size?: number; metadata?: unknown }): Promise<unknown>;
    delete(cache: string, key: string): Promise<unknown>;
    ls(cache: string): Promise<Record<string, IndexEntry>>;
  };
  export default entryIndex;
}

declare module 'cacache/lib/content/write.js' {
  import type { Writable } from 'node:stream';
  const contentWrite: {
    stream(cache: string, opts: { algorithms?: string[]; integrity?: string; size?: number }): Writable;
  };
  export default contentWrite;
}
