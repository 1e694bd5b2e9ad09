// cacache's content writer is not in its public index, but it is the piece that writes a blob
// to tmp/ and moves it into place if absent; kocache writes content first and index records
// after, because a layer's digest and diffid are only known once the stream has ended.
declare module 'cacache/lib/content/write.js' {
  import type { EventEmitter } from 'node:events';
  interface WriteOptions {
    algorithms?: string[];
    integrity?: string;
    size?: number;
    tmpPrefix?: string;
  }
  interface ContentWriteStream extends EventEmitter {
    write(chunk: Uint8Array): boolean;
    end(cb?: () => void): this;
  }
  export function stream(cache: string, opts?: WriteOptions): ContentWriteStream;
}
