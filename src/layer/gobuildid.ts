import { closeSync, openSync, readSync } from 'node:fs';

// Where `go tool buildid` looks: the ELF note "Go" of type 4, or else the text the linker writes
// near the start of every Go binary: \xff Go build ID: "<id>"\n \xff
const RAW_PREFIX = Buffer.from('\xff Go build ID: "', 'latin1');
const RAW_SUFFIX = Buffer.from('"\n \xff', 'latin1');
const HEAD_BYTES = 64 * 1024;
const NT_GO_BUILD_ID = 4;

/** The Go build ID embedded in a binary, or undefined for anything else. Reads no more than needed. */
export function readGoBuildId(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const head = Buffer.alloc(HEAD_BYTES);
    const n = readSync(fd, head, 0, HEAD_BYTES, 0);
    const buf = head.subarray(0, n);
    if (buf.length >= 4 && buf.readUInt32BE(0) === 0x7f454c46) {
      const fromNote = elfNote(fd, buf);
      if (fromNote !== undefined) return fromNote;
    }
    return rawId(buf);
  } finally {
    closeSync(fd);
  }
}

function rawId(buf: Buffer): string | undefined {
  const start = buf.indexOf(RAW_PREFIX);
  if (start < 0) return undefined;
  const from = start + RAW_PREFIX.length;
  const end = buf.indexOf(RAW_SUFFIX, from);
  if (end < 0 || end - from > 1024) return undefined;
  const id = buf.subarray(from, end).toString('latin1');
  return isPlausible(id) ? id : undefined;
}

function elfNote(fd: number, head: Buffer): string | undefined {
  const is64 = head[4] === 2;
  const le = head[5] === 1;
  const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const word = (b: Buffer, o: number) => (is64 ? Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)) : u32(b, o));
  try {
    const phoff = word(head, is64 ? 0x20 : 0x1c);
    const phentsize = u16(head, is64 ? 0x36 : 0x2a);
    const phnum = u16(head, is64 ? 0x38 : 0x2c);
    for (let i = 0; i < phnum; i++) {
      const ph = phoff + i * phentsize;
      if (ph + phentsize > head.length) break;
      if (u32(head, ph) !== 4 /* PT_NOTE */) continue;
      const off = word(head, ph + (is64 ? 0x08 : 0x04));
      const size = Math.min(word(head, ph + (is64 ? 0x20 : 0x10)), 1 << 16);
      const notes = Buffer.alloc(size);
      readSync(fd, notes, 0, size, off);
      let p = 0;
      while (p + 12 <= notes.length) {
        const namesz = u32(notes, p);
        const descsz = u32(notes, p + 4);
        const type = u32(notes, p + 8);
        const nameStart = p + 12;
        const descStart = nameStart + align4(namesz);
        if (descStart + descsz > notes.length) break;
        const name = notes.subarray(nameStart, nameStart + namesz).toString('latin1').replace(/\0+$/, '');
        if (name === 'Go' && type === NT_GO_BUILD_ID) {
          const id = notes.subarray(descStart, descStart + descsz).toString('latin1').replace(/\0+$/, '');
          return isPlausible(id) ? id : undefined;
        }
        p = descStart + align4(descsz);
      }
    }
  } catch {
    // A malformed ELF file is not a Go binary as far as kocache cares; it falls back to hashing.
  }
  return undefined;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

function isPlausible(id: string): boolean {
  return id.length > 0 && /^[A-Za-z0-9_\-/=+]+$/.test(id);
}
