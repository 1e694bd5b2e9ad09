/**
 * The header records of a layer's tar entries: POSIX ustar, with a PAX extended header before an
 * entry whose name or link target ustar cannot hold. Written here rather than through tar-stream's
 * pack stream, which cost main-thread CPU in proportion to the entries (see docs/performance.md);
 * the bytes are the ones tar-stream's pack writes for the same header, which test/tarheader.test.ts
 * checks against its public pack stream, so layers are what they were when it wrote them.
 */

/** The entry kinds a layer holds. */
export type EntryType = 'file' | 'directory' | 'symlink';

/** The fields of one entry's header. */
export interface EntryHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: Date;
  size: number;
  type: EntryType;
  linkname?: string;
}

const RECORD = 512;
const TYPEFLAG: Record<EntryType | 'pax-header', number> = { file: 0x30, symlink: 0x32, directory: 0x35, 'pax-header': 0x78 };

/** `value` as `digits` octal digits and a space; all sevens when it does not fit, as tar-stream. */
function octal(value: number, digits: number): string {
  const s = value.toString(8);
  return s.length > digits ? `${'7'.repeat(digits)} ` : `${s.padStart(digits, '0')} `;
}

/** ustar's name and prefix for `name`, or undefined when ustar cannot hold it. */
function splitName(name: string): { name: string; prefix: string } | undefined {
  // Only ASCII names go in ustar fields: a reader could not tell which encoding others were in.
  if (Buffer.byteLength(name) !== name.length) return undefined;
  // The shortest prefix (whole leading components) that leaves at most 100 bytes of name.
  let rest = name;
  let prefix = '';
  while (rest.length > 100) {
    const slash = rest.indexOf('/');
    if (slash === -1) return undefined;
    prefix += prefix ? `/${rest.slice(0, slash)}` : rest.slice(0, slash);
    rest = rest.slice(slash + 1);
  }
  return prefix.length > 155 ? undefined : { name: rest, prefix };
}

interface Fields {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: number;
  linkname: string;
  uname: string;
  gname: string;
}

/** One 512-byte ustar header record. */
function ustar(f: Fields): Buffer {
  const b = Buffer.alloc(RECORD);
  b.write(f.name, 0, 100);
  b.write(octal(f.mode & 0o7777, 6), 100);
  b.write(octal(f.uid, 6), 108);
  b.write(octal(f.gid, 6), 116);
  if (f.size.toString(8).length > 11) {
    // Past 11 octal digits (8 GiB): base-256, the GNU and star extension every reader knows.
    b[124] = 0x80;
    let n = f.size;
    for (let i = 11; i > 0; i--) {
      b[124 + i] = n % 256;
      n = Math.floor(n / 256);
    }
  } else {
    b.write(octal(f.size, 11), 124);
  }
  b.write(octal(f.mtime, 11), 136);
  b[156] = f.typeflag;
  if (f.linkname) b.write(f.linkname, 157, 100);
  b.write('ustar\u000000', 257, 'latin1');
  if (f.uname) b.write(f.uname, 265, 32);
  if (f.gname) b.write(f.gname, 297, 32);
  b.write(octal(0, 6), 329); // devmajor
  b.write(octal(0, 6), 337); // devminor
  if (f.prefix) b.write(f.prefix, 345, 155);
  // The checksum counts its own field as eight spaces.
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += b[i]!;
  for (let i = 156; i < RECORD; i++) sum += b[i]!;
  b.write(octal(sum, 6), 148);
  return b;
}

/** One PAX record, `<length> <key>=<value>\n`, where the length counts its own digits. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const len = Buffer.byteLength(body);
  let total = len + String(len).length;
  if (String(total).length > String(len).length) total = len + String(total).length;
  return `${total}${body}`;
}

/** The latest mtime a tar header holds: 11 octal digits of seconds (the year 2242). */
export const MAX_TAR_SECONDS = 8 ** 11 - 1;

/** Whole seconds from 1970 that a tar header can hold. */
export function fitsTarTime(seconds: number): boolean {
  return Number.isSafeInteger(seconds) && seconds >= 0 && seconds <= MAX_TAR_SECONDS;
}

function checkHeader(h: EntryHeader): number {
  const seconds = Math.trunc(h.mtime.getTime() / 1000);
  if (!fitsTarTime(seconds)) throw new RangeError(`tar: mtime ${seconds} is out of range`);
  if (!Number.isSafeInteger(h.size) || h.size < 0) throw new RangeError(`tar: size ${h.size} is out of range`);
  return seconds;
}

/**
 * The records that precede an entry's body: a ustar header or, when ustar cannot hold the name or
 * the link target (longer than its fields, or a name that is not ASCII), a PAX extended header
 * carrying both, its body padded to a record, then the ustar header.
 */
export function headerBytes(h: EntryHeader): Buffer[] {
  const mtime = checkHeader(h);
  const linkname = h.linkname ?? '';
  const common = { mode: h.mode, uid: h.uid, gid: h.gid, mtime, uname: h.uname, gname: h.gname };
  const split = splitName(h.name);
  if (split && Buffer.byteLength(linkname) <= 100) {
    return [ustar({ ...common, ...split, size: h.size, typeflag: TYPEFLAG[h.type], linkname })];
  }
  const pax = Buffer.from(paxRecord('path', h.name) + (linkname ? paxRecord('linkpath', linkname) : ''));
  // The ustar records around it name no real path: readers take the PAX values.
  const stand = { ...common, name: 'PaxHeader', prefix: '', linkname: linkname ? 'PaxHeader' : '' };
  const out = [ustar({ ...stand, size: pax.byteLength, typeflag: TYPEFLAG['pax-header'] }), pax];
  const pad = padding(pax.byteLength);
  if (pad > 0) out.push(Buffer.alloc(pad));
  out.push(ustar({ ...stand, size: h.size, typeflag: TYPEFLAG[h.type] }));
  return out;
}

/** Zero bytes that bring `size` to a whole number of 512-byte records. */
export function padding(size: number): number {
  const over = size & 511;
  return over === 0 ? 0 : 512 - over;
}

/** Recomputes a header's checksum after bytes of it were changed. */
function rechecksum(b: Buffer): void {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < RECORD; i++) sum += b[i]!;
  b.write(octal(sum, 6), 148);
}

/**
 * The records before an entry whose name is not valid UTF-8 (a file named in Latin-1 on disk,
 * say), as GNU tar writes it: the name's bytes as they are, in the header's name field, or, past
 * its 100 bytes, in a GNU long-name entry (`././@LongLink`, type L) before the header. PAX would
 * need the name in UTF-8, which it is not.
 */
export function rawNameHeaderBytes(h: EntryHeader, name: Buffer): Buffer[] {
  const mtime = checkHeader(h);
  const linkname = h.linkname ?? '';
  if (Buffer.byteLength(linkname) > 100) throw new RangeError(`tar: a name that is not UTF-8 with a link target over 100 bytes (${name.toString('latin1')})`);
  const common = { mode: h.mode, uid: h.uid, gid: h.gid, mtime, uname: h.uname, gname: h.gname, prefix: '', linkname };
  const header = ustar({ ...common, name: '', size: h.size, typeflag: TYPEFLAG[h.type] });
  name.copy(header, 0, 0, Math.min(name.length, 100));
  rechecksum(header);
  if (name.length <= 100) return [header];
  const body = Buffer.concat([name, Buffer.alloc(1)]);
  const longName = ustar({ ...common, mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', linkname: '', name: '././@LongLink', size: body.length, typeflag: 0x4c });
  const out = [longName, body];
  const pad = padding(body.length);
  if (pad > 0) out.push(Buffer.alloc(pad));
  out.push(header);
  return out;
}

/** The fields entries of one layer share. */
export type SharedFields = Pick<EntryHeader, 'uid' | 'gid' | 'uname' | 'gname' | 'mtime'>;

/**
 * headerBytes for many entries that share owner and mtime, without its per-entry garbage: a ustar
 * record is a copy of the shared fields' template with the entry's own fields written in, its
 * checksum the template's sum plus theirs. Same bytes (test/tarheader.test.ts); names ustar
 * cannot hold, link targets that are not ASCII and sizes past 8 GiB go through headerBytes. In a
 * layer of 96k small files headerBytes was a sixth of the main thread (docs/compression.md).
 */
export class HeaderWriter {
  private readonly template: Buffer;
  private readonly templateSum: number;
  private readonly record = Buffer.alloc(RECORD);
  private readonly out = [this.record];

  constructor(private readonly shared: SharedFields) {
    const mtime = checkHeader({ ...shared, name: '', mode: 0, size: 0, type: 'file' });
    const t = ustar({ ...shared, name: '', prefix: '', mode: 0, size: 0, mtime, typeflag: 0, linkname: '' });
    // The entry's own fields start empty: mode, size, checksum, typeflag.
    t.fill(0, 100, 108);
    t.fill(0, 124, 136);
    t.fill(0, 148, 157);
    let sum = 8 * 0x20;
    for (let i = 0; i < RECORD; i++) sum += t[i]!;
    this.template = t;
    this.templateSum = sum;
  }

  /** The records before an entry, as headerBytes gives them. The array and its buffer are reused by the next call. */
  header(name: string, type: EntryType, mode: number, size: number, linkname = ''): Buffer[] {
    const slow = () => headerBytes({ ...this.shared, name, type, mode, size, linkname });
    if (!(size >= 0 && size < 8 ** 11 && Number.isSafeInteger(size)) || linkname.length > 100) return slow();
    let prefix = '';
    let rest = name;
    if (name.length > 100) {
      const split = splitName(name);
      if (!split) return slow();
      prefix = split.prefix;
      rest = split.name;
    }
    const b = this.record;
    this.template.copy(b);
    let sum = this.templateSum;
    // ASCII only, written byte for byte; anything else takes the PAX path.
    for (let i = 0; i < rest.length; i++) {
      const c = rest.charCodeAt(i);
      if (c > 0x7f) return slow();
      b[i] = c;
      sum += c;
    }
    for (let i = 0; i < prefix.length; i++) {
      const c = prefix.charCodeAt(i);
      if (c > 0x7f) return slow();
      b[345 + i] = c;
      sum += c;
    }
    for (let i = 0; i < linkname.length; i++) {
      const c = linkname.charCodeAt(i);
      if (c > 0x7f) return slow();
      b[157 + i] = c;
      sum += c;
    }
    sum += putOctal(b, 100, mode & 0o7777, 6);
    sum += putOctal(b, 124, size, 11);
    b[156] = TYPEFLAG[type];
    sum += TYPEFLAG[type];
    putOctal(b, 148, sum, 6);
    return this.out;
  }
}

/** `value` (which fits) as `digits` octal digits and a space at `at`; returns the bytes' sum. */
function putOctal(b: Buffer, at: number, value: number, digits: number): number {
  let sum = 0x20;
  b[at + digits] = 0x20;
  for (let i = digits - 1; i >= 0; i--) {
    const d = 0x30 + (value % 8);
    b[at + i] = d;
    sum += d;
    value = Math.floor(value / 8);
  }
  return sum;
}
