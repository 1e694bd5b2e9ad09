import type { Dirent, Stats } from 'node:fs';
import type { Hash } from 'node:crypto';

/** What `walkShare` needs from Node, passed in: the worker runs the function's source text. */
export interface ShareIo {
  readdirSync(path: string, opts: { withFileTypes: true }): Dirent[];
  lstatSync(path: string): Stats;
  openSync(path: string, flags: number): number;
  fstatSync(fd: number): Stats;
  readSync(fd: number, buf: Uint8Array, offset: number, length: number, position: null): number;
  closeSync(fd: number): void;
  readlinkSync(path: string, encoding: 'utf8'): string;
  createHash(algorithm: 'sha256'): Hash;
  /** crypto.hash (Node >= 20.12): a one-shot digest. */
  hash(algorithm: 'sha256', data: Uint8Array, encoding: 'hex'): string;
  buf: Buffer;
  /** False: files are only lstat-ed, as walkSource does (an edit or a hit, whose stat cache knows the hashes). */
  read: boolean;
}

/** One thread's part of a tree: columns, not an object per entry (cheap to post between threads). */
export interface ShareOut {
  /** Paths relative to the root, `/`-separated. */
  rels: string[];
  /** 1 file, 2 directory, 3 symbolic link. */
  types: number[];
  /** Six per entry: permission bits, size (0 unless a file), mtimeMs, ctimeMs, inode, device. */
  numbers: number[];
  /** One per link, in order. */
  links: string[];
  /** sha256 hex, one per file, in order (none unless `ShareIo.read`). */
  hashes: string[];
  bytes: number;
  /**
   * Set when an entry needs what only walkSource does (a name that is not UTF-8, a socket or
   * device, anything that failed): the caller then lists the tree with walkSource, which reports
   * what is wrong the way a one-thread walk does.
   */
  bad: boolean;
}

export function emptyShare(): ShareOut {
  return { rels: [], types: [], numbers: [], links: [], hashes: [], bytes: 0, bad: false };
}

/**
 * Lists the folders `dirs` (relative to `base`, an absolute path, '' for /) claimed one at a time
 * through `flags[0]`, and everything below each (or, given `below`, only their children, the
 * subfolders going to `below`), hashing each regular file as it is found when `io.read`: one open,
 * fstat, read and close a file instead of an lstat in the walk and an open, read and close in the
 * hashing.
 * `flags[1]` set stops every thread sharing them. Self-contained (no imports, no outer names):
 * the hashing worker runs its source text, so both threads take the same steps.
 */
export function walkShare(io: ShareIo, base: string, dirs: readonly string[], flags: Int32Array, out: ShareOut, below?: string[]): void {
  const fail = () => {
    out.bad = true;
    Atomics.store(flags, 1, 1);
  };
  const buf = io.buf;
  // A folder's entries in name order, each folder's below it before the next name: runs that are
  // nearly in walkSource's order already, which its sort then merges in few comparisons.
  const byName = (a: Dirent, b: Dirent) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  /** False: stop (failed, or another thread failed). */
  const visit = (rel: string): boolean => {
    if (Atomics.load(flags, 1) !== 0) return false;
    const dirAbs = rel === '' ? base : `${base}/${rel}`;
    let list: Dirent[];
    try {
      list = io.readdirSync(dirAbs || '/', { withFileTypes: true });
    } catch {
      fail();
      return false;
    }
    list.sort(byName);
    for (const d of list) {
      const name = d.name;
      // A name that is not UTF-8 comes back with U+FFFD in it: walkSource keeps its bytes.
      if (name.includes('\uFFFD')) {
        fail();
        return false;
      }
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const abs = `${dirAbs}/${name}`;
      let st: Stats;
      try {
        if (d.isFile() && !io.read) {
          st = io.lstatSync(abs);
          if (!st.isFile()) throw new Error('changed');
          out.types.push(1);
        } else if (d.isFile()) {
          const fd = io.openSync(abs, 0); // O_RDONLY
          try {
            st = io.fstatSync(fd);
            if (!st.isFile()) throw new Error('changed'); // replaced since the listing
            // Read to the size the stat gave, so that a small file costs one read, not a second
            // one that finds the end (a file written meanwhile is too new for the stat cache).
            const size = st.size;
            let got = 0;
            if (size <= buf.length) {
              // In the buffer whole: hashed in one call, no Hash object per file.
              while (got < size) {
                const n = io.readSync(fd, buf, got, size - got, null);
                if (n === 0) break;
                got += n;
              }
              out.hashes.push(io.hash('sha256', buf.subarray(0, got), 'hex'));
            } else {
              const h = io.createHash('sha256');
              while (got < size) {
                const n = io.readSync(fd, buf, 0, buf.length, null);
                if (n === 0) break;
                h.update(buf.subarray(0, n));
                got += n;
              }
              out.hashes.push(h.digest('hex'));
            }
            out.bytes += got;
          } finally {
            io.closeSync(fd);
          }
          out.types.push(1);
        } else if (d.isDirectory()) {
          st = io.lstatSync(abs);
          if (!st.isDirectory()) throw new Error('changed');
          out.types.push(2);
        } else if (d.isSymbolicLink()) {
          st = io.lstatSync(abs);
          if (!st.isSymbolicLink()) throw new Error('changed');
          out.links.push(io.readlinkSync(abs, 'utf8'));
          out.types.push(3);
        } else {
          throw new Error('not a file, folder or link');
        }
      } catch {
        fail();
        return false;
      }
      out.rels.push(childRel);
      out.numbers.push(st.mode & 0o7777, d.isFile() ? st.size : 0, st.mtimeMs, st.ctimeMs, st.ino, st.dev);
      if (d.isDirectory()) {
        if (below) below.push(childRel);
        else if (!visit(childRel)) return false;
      }
    }
    return true;
  };
  for (;;) {
    if (Atomics.load(flags, 1) !== 0) return;
    const claimed = Atomics.add(flags, 0, 1);
    if (claimed >= dirs.length) return;
    if (!visit(dirs[claimed]!)) return;
  }
}
