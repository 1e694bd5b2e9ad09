import { createHash } from 'node:crypto';
import type { MessagePort, Worker } from 'node:worker_threads';
import { traceAdd } from '../util/trace.js';

/**
 * The sha256 of a stream of blocks (a layer's tar: its diffid), on this thread or on a worker of
 * its own, and on the worker if asked the sha256 of each regular file's data in the tar. A block
 * is handed over as it is, never copied, and handed back through `done` once the hash has read
 * it: only then may its buffer be filled again (blockpool.ts).
 */
export interface StreamHash {
  /** Whether blocks should live in shared memory (a buffer the worker can read where it is). */
  readonly shared: boolean;
  /** With `keys`: the block's key (gzip.ts blockKey), once the worker has hashed it. */
  add(block: Buffer, done: () => void): Promise<Buffer> | undefined;
  /** The hex digest of everything added, once the hash has read it all. */
  digest(): Promise<StreamDigest>;
  /** Stops the worker, if any, whether or not the digest was asked for (a failed pack). */
  close(): void;
  /** With `blob`: the blob's hash on the same worker. */
  readonly blob?: BlobHash | undefined;
}

/**
 * A second stream hashed on the same worker: the layer's blob as it is written. Each chunk is
 * copied into shared memory the worker reads (a few MiB, used again and again), which costs the
 * main thread far less than hashing it.
 */
export interface BlobHash {
  /** The next bytes of the blob; resolves once they are copied (it may wait for the worker). */
  add(chunk: Uint8Array): Promise<void>;
  /** The blob ended: its sha256 (hex), once the worker has read it all. */
  end(): Promise<string>;
}

export interface StreamDigest {
  hex: string;
  /** With `files`: each regular file of the tar in order, its size and (64 hex digits each) sha256. */
  files?: { sizes: Float64Array; hashes: string } | undefined;
  /**
   * With `paths`: each non-empty block's CRC-32 and the CRC-32 of the 32 KiB before it, as read;
   * or, when a file could not be read as the tar says (gone, shorter, longer), why not.
   */
  blocks?: { crcs: Uint32Array; dicts: Uint32Array } | { failed: string } | undefined;
}

/** The hash on the calling thread: each block is read at once. */
export function localHash(): StreamHash {
  const hash = createHash('sha256');
  return {
    shared: false,
    add(block, done) {
      hash.update(block);
      done();
      return undefined;
    },
    digest: async () => ({ hex: hash.digest('hex') }),
    close: () => undefined,
  };
}

/** Blocks handed over but not yet read that the ring can hold; then the producer waits. */
const RING = 256;
// Shared control words: blocks published, blocks read, whether the worker failed, then RING
// slots of SLOT words (buffer id, offset, length, which stream); after them RING block keys of KEY bytes.
const KEY = 32;
const SLOT = 4;
/** Which stream a slot's bytes belong to: the tar, or the blob (BlobHash). */
const TAR = 0;
const BLOB = 1;
/** The blob's chunks are copied into this many pieces of shared memory of STAGE_PIECE bytes. */
const STAGE_PIECES = 8;
const STAGE_PIECE = 1 << 20;
/** gzip.ts WINDOW: a block's key covers the 32 KiB of input before it. */
const WINDOW = 32 * 1024;
const WRITTEN = 0;
const READ = 1;
const FAILED = 2;
/** Set once the worker's work was sent (WorkerStart.configure). */
const CONFIGURED = 3;
const SLOTS = 4;
/** Buffer ids that end the tar, and the blob. */
const END = -1;
const BLOB_END = -2;

// CommonJS, run with `eval`: the CLI is one bundled file, so there is no module path to start.
// No message per block (a postMessage carrying a SharedArrayBuffer cost ~0.4 ms of the main
// thread): blocks are published in a ring of shared words, and each buffer is sent once, on a
// port the worker reads synchronously when it meets a buffer id it does not know yet.
const WORKER_SOURCE = `
const { parentPort, workerData, receiveMessageOnPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { control, port, ring } = workerData;
const words = new Int32Array(control);
// Started before its work was known: told it on the port before the first block.
Atomics.wait(words, ${CONFIGURED}, 0);
const { files, spec, paths, blob } = receiveMessageOnPort(port).message;
const keys = new Uint8Array(control, (${SLOTS} + ring * ${SLOT}) * 4, ring * ${KEY});
const buffers = new Map();
const hash = createHash('sha256');
const blobHash = blob ? createHash('sha256') : undefined;

// The tar read as it passes, for each regular file's hash: 512-byte header records (gathered
// across blocks), each entry's data, its padding. A PAX record's size= applies to the next entry.
const header = Buffer.alloc(512);
let gathered = 0;
let left = 0;
let pad = 0;
let fileHash;
let pax;
let paxSize = -1;
const sizes = [];
const hashes = [];

// A lazy tar (paths given): the blocks hold the headers and padding, and the data of the i-th
// regular file is read from paths[i] (null: it is in the blocks), into the hash and the blocks' CRC-32s.
const lazy = paths !== undefined;
const fs = lazy ? require('node:fs') : undefined;
const { crc32 } = require('node:zlib');
const scratch = lazy ? Buffer.allocUnsafe(1 << 20) : undefined;
let nextFile = 0;
let fd = -1;
let fdName = '';
let failed = '';
let crc = 0;
const crcs = [];
const dicts = [];
// The last ${WINDOW} bytes read, a ring: the dictionary of the next block.
const tail = lazy ? Buffer.alloc(${WINDOW}) : undefined;
let tailAt = 0;
let tailLength = 0;
function piece(bytes) {
  hash.update(bytes);
  crc = crc32(bytes, crc);
  if (bytes.length >= ${WINDOW}) {
    bytes.copy(tail, 0, bytes.length - ${WINDOW});
    tailAt = 0;
    tailLength = ${WINDOW};
    return;
  }
  for (let off = 0; off < bytes.length;) {
    const k = Math.min(${WINDOW} - tailAt, bytes.length - off);
    bytes.copy(tail, tailAt, off, off + k);
    tailAt = (tailAt + k) % ${WINDOW};
    off += k;
  }
  tailLength = Math.min(${WINDOW}, tailLength + bytes.length);
}
function tailCrc() {
  if (tailLength < ${WINDOW}) return crc32(tail.subarray(0, tailLength));
  return crc32(tail.subarray(0, tailAt), crc32(tail.subarray(tailAt)));
}
// k bytes of the current file's data, from the file (asking one byte more at its end: it must not come).
function fromFile(k) {
  while (k > 0) {
    const want = Math.min(k, scratch.length - 1);
    const ask = want === left ? want + 1 : want;
    const n = fs.readSync(fd, scratch, 0, ask, null);
    if (n === 0) throw new Error(fdName + ' is shorter than when the tar was laid out');
    if (n > want) throw new Error(fdName + ' is longer than when the tar was laid out');
    piece(scratch.subarray(0, n));
    k -= n;
    left -= n;
  }
}
function size() {
  if (header[124] & 0x80) {
    let n = 0;
    for (let i = 125; i < 136; i++) n = n * 256 + header[i];
    return n;
  }
  let n = 0;
  for (let i = 124; i < 136; i++) {
    const c = header[i];
    if (c < 0x30 || c > 0x37) {
      if (n > 0 || (c !== 0x20 && c !== 0)) break;
      continue;
    }
    n = n * 8 + (c - 0x30);
  }
  return n;
}
function entryEnd() {
  if (fileHash) hashes.push(fileHash.digest('hex'));
  else if (pax) {
    const m = /(?:^|\\n)\\d+ size=(\\d+)\\n/.exec(Buffer.concat(pax).toString('latin1'));
    if (m) paxSize = Number(m[1]);
  }
  fileHash = undefined;
  pax = undefined;
}
function onHeader() {
  // An end-of-archive record: all zeros, so no checksum.
  if (header[148] === 0) return;
  const type = header[156];
  let n = size();
  if (type !== 0x78 && type !== 0x67 && paxSize >= 0) {
    n = paxSize;
    paxSize = -1;
  }
  left = n;
  pad = (512 - (n % 512)) % 512;
  if (type === 0x30 || type === 0 || type === 0x37) {
    if (lazy) {
      const path = paths[nextFile++];
      if (path === undefined) throw new Error('the tar has more files than were given');
      if (n > 0 && path !== null) {
        fdName = typeof path === 'string' ? path : Buffer.from(path).toString();
        fd = fs.openSync(typeof path === 'string' ? path : Buffer.from(path), 'r');
      }
    } else {
      sizes.push(n);
      fileHash = createHash('sha256');
    }
  } else if (type === 0x78) {
    pax = [];
  }
  if (n === 0) entryEnd();
}
function read(bytes) {
  let off = 0;
  // Lazy: where the block's own bytes not yet hashed start (they go in runs, not record by record).
  let run = 0;
  while (off < bytes.length) {
    if (left > 0) {
      const k = Math.min(left, bytes.length - off);
      if (fd >= 0) {
        if (off > run) piece(bytes.subarray(run, off));
        fromFile(k);
        off += k;
        run = off;
        if (left === 0) {
          fs.closeSync(fd);
          fd = -1;
          entryEnd();
        }
        continue;
      }
      const part = bytes.subarray(off, off + k);
      if (fileHash) fileHash.update(part);
      else if (pax) pax.push(Buffer.from(part));
      off += k;
      left -= k;
      if (left === 0) entryEnd();
    } else if (pad > 0) {
      const k = Math.min(pad, bytes.length - off);
      off += k;
      pad -= k;
    } else {
      const k = Math.min(512 - gathered, bytes.length - off);
      header.set(bytes.subarray(off, off + k), gathered);
      gathered += k;
      off += k;
      if (gathered === 512) {
        gathered = 0;
        onHeader();
      }
    }
  }
  if (lazy && bytes.length > run) piece(bytes.subarray(run));
}

// The block key of gzip.ts (blockKey), with the dictionary kept as gzipBlocks keeps it.
let dictionary = Buffer.alloc(0);
const length = Buffer.alloc(4);
function key(bytes, slot) {
  length.writeUInt32BE(dictionary.length);
  const k = createHash('sha256').update(spec).update('\\0').update(length).update(dictionary).update(bytes).digest();
  keys.set(k, slot * ${KEY});
  if (bytes.length === 0) return;
  dictionary = bytes.length >= ${WINDOW} ? Buffer.from(bytes.subarray(bytes.length - ${WINDOW})) : Buffer.concat([dictionary, bytes]).subarray(-${WINDOW});
}

// The tar's results, posted at its end.
function tarEnd() {
  if (fd >= 0) fs.closeSync(fd);
  if (lazy && !failed && nextFile !== paths.length) failed = 'the tar has fewer files than were given';
  const out = files ? { sizes: new Float64Array(sizes), hashes: hashes.join('') } : undefined;
  const blocks = !lazy ? undefined : failed ? { failed } : { crcs: new Uint32Array(crcs), dicts: new Uint32Array(dicts) };
  parentPort.postMessage({ hex: hash.digest('hex'), files: out, blocks }, out ? [out.sizes.buffer] : []);
}

let done = 0;
// Streams still to end: the tar, and the blob when it is hashed here.
let open = blob ? 2 : 1;
try {
for (;;) {
  const written = Atomics.load(words, ${WRITTEN});
  if (done === written) {
    Atomics.wait(words, ${WRITTEN}, written);
    continue;
  }
  const slot = ${SLOTS} + (done % ring) * ${SLOT};
  const id = words[slot];
  if (id === ${END} || id === ${BLOB_END}) {
    if (id === ${END}) tarEnd();
    else parentPort.postMessage({ blobHex: blobHash.digest('hex') });
    Atomics.store(words, ${READ}, ++done);
    Atomics.notify(words, ${READ});
    if (--open === 0) break;
    continue;
  }
  while (!buffers.has(id)) {
    const got = receiveMessageOnPort(port);
    if (got === undefined) throw new Error('block buffer ' + id + ' was never sent');
    buffers.set(got.message.id, got.message.buffer);
  }
  const bytes = new Uint8Array(buffers.get(id), words[slot + 1], words[slot + 2]);
  if (words[slot + 3] === ${BLOB}) {
    blobHash.update(bytes);
  } else {
    if (lazy) {
      if (!failed && bytes.length > 0) {
        dicts.push(tailCrc());
        crc = 0;
        try {
          read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
        } catch (err) {
          // Said at the end: the caller builds again reading the files itself, and tells why.
          failed = String(err && err.message || err);
        }
        crcs.push(crc);
      }
    } else {
      hash.update(bytes);
    }
    if (files) read(bytes);
    if (spec !== undefined) key(bytes, done % ring);
  }
  Atomics.store(words, ${READ}, ++done);
  Atomics.notify(words, ${READ});
}
} catch (err) {
  // Said in shared memory too: the main thread may be waiting for room in the ring.
  Atomics.store(words, ${FAILED}, 1);
  Atomics.notify(words, ${READ});
  throw err;
}
`;

/** A hashing worker started before its work is known: it starts up while the caller gets ready. */
export interface WorkerStart {
  /** What it hashes; from then on it takes blocks. Called once. */
  configure(o?: WorkerWork): StreamHash;
  /** Stops it, configured or not. */
  close(): void;
}

export interface WorkerWork {
  /** Each regular file's sha256 too (StreamDigest.files). */
  files?: boolean;
  /** gzip's block keys, with this block-key spec. */
  keys?: string | undefined;
  /** A lazy tar's file paths (StreamDigest.blocks). */
  paths?: readonly (string | Buffer | null)[] | undefined;
  /** The blob's hash as well (StreamHash.blob). */
  blob?: boolean;
}

/**
 * The hash on a worker thread started now: the blocks must be backed by a SharedArrayBuffer (one
 * that is not is copied into one). The worker's start-up (~30 ms of CPU) is paid on the other core
 * while this one reads and tars; worth it only for a big stream (pack.ts decides).
 */
export function workerHash(o: WorkerWork = {}): StreamHash {
  return startWorkerHash().configure(o);
}

/** A hashing worker started now, told its work later (so its start-up overlaps the caller's). */
export function startWorkerHash(): WorkerStart {
  const { Worker: WorkerThread, MessageChannel } = process.getBuiltinModule('node:worker_threads');
  const control = new SharedArrayBuffer((SLOTS + RING * SLOT) * 4 + RING * KEY);
  const words = new Int32Array(control);
  const keys = new Uint8Array(control, (SLOTS + RING * SLOT) * 4, RING * KEY);
  const { port1, port2 } = new MessageChannel();
  const worker: Worker = new WorkerThread(WORKER_SOURCE, { eval: true, workerData: { control, port: port2, ring: RING }, transferList: [port2] });
  // Until configured, a failure is kept for the StreamHash to report.
  let early: Error | undefined;
  let failed: (err: Error) => void = (err) => void (early ??= err);
  worker.on('error', (err) => failed(err));
  worker.on('exit', () => failed(new Error('the hashing worker stopped')));
  const stop = () => {
    worker.removeAllListeners('exit');
    port1.close();
    void worker.terminate();
  };
  return {
    configure(o = {}) {
      port1.postMessage({ files: o.files === true, spec: o.keys, paths: o.paths, blob: o.blob === true });
      Atomics.store(words, CONFIGURED, 1);
      Atomics.notify(words, CONFIGURED);
      const h = running(worker, port1, words, keys, o, stop);
      failed = h.fail;
      if (early) h.fail(early);
      return h;
    },
    close: stop,
  };
}

/** The StreamHash of a configured worker; `fail` is for the worker's errors and exit. */
function running(worker: Worker, port1: MessagePort, words: Int32Array, keys: Uint8Array, o: WorkerWork, stop: () => void): StreamHash & { fail: (err: Error) => void } {
  const keyed = o.keys !== undefined;
  const ids = new WeakMap<SharedArrayBuffer, number>();
  /** Each block published and not yet read, oldest first, from index `head`. */
  const pending: { done: () => void; key?: ((k: Buffer) => void) | undefined; lost?: ((err: Error) => void) | undefined }[] = [];
  let waiting = 0;
  let watching = false;
  let head = 0;
  let read = 0;
  let written = 0;
  let nextId = 0;
  let failed: Error | undefined;
  let finish: { resolve: (d: StreamDigest) => void; reject: (err: Error) => void } | undefined;
  let blobFinish: { resolve: (hex: string) => void; reject: (err: Error) => void } | undefined;
  const blobHex = new Promise<string>((resolve, reject) => (blobFinish = { resolve, reject }));
  blobHex.catch(noop); // seen where it is awaited
  const fail = (err: Error) => {
    failed ??= err;
    finish?.reject(failed);
    blobFinish?.reject(failed);
    // Keys that will never come: their blocks' compression fails with the worker's error.
    for (let i = head; i < pending.length; i++) pending[i]!.lost?.(failed);
  };
  worker.on('message', (m: StreamDigest | { blobHex: string }) => ('blobHex' in m ? blobFinish?.resolve(m.blobHex) : finish?.resolve(m)));
  /**
   * Hands back the blocks the worker has read since the last look, with their keys (copied out
   * before their ring slot can be used again: a block is published only after a look).
   */
  const collect = () => {
    const now = Atomics.load(words, READ);
    while (read < now) {
      const p = pending[head]!;
      pending[head++] = DONE;
      if (p.key) {
        waiting--;
        p.key(Buffer.from(keys.subarray((read % RING) * KEY, (read % RING + 1) * KEY)));
      }
      read++;
      p.done();
    }
    if (head > RING) {
      pending.splice(0, head);
      head = 0;
    }
  };
  /** While a key is awaited, wakes when the worker reads a block (no message per block). */
  const watch = () => {
    if (watching || waiting === 0 || failed) return;
    watching = true;
    const r = (Atomics as unknown as WaitAsync).waitAsync(words, READ, read);
    const woken = () => {
      watching = false;
      collect();
      watch();
    };
    if (r.async) void r.value.then(woken);
    else queueMicrotask(woken);
  };
  const broken = () => failed ?? (Atomics.load(words, FAILED) !== 0 ? new Error('the hashing worker failed') : undefined);
  const publish = (id: number, length: number, stream = TAR, offset = 0) => {
    // The ring is full only when the worker has fallen RING blocks behind: wait for it.
    while (written - Atomics.load(words, READ) >= RING) {
      const err = broken();
      if (err) throw err;
      Atomics.wait(words, READ, Atomics.load(words, READ), 100);
    }
    const slot = SLOTS + (written % RING) * SLOT;
    words[slot] = id;
    words[slot + 1] = offset;
    words[slot + 2] = length;
    words[slot + 3] = stream;
    Atomics.store(words, WRITTEN, ++written);
    Atomics.notify(words, WRITTEN);
  };
  /** Sends a buffer to the worker the first time it is published. */
  const idOf = (buffer: SharedArrayBuffer) => {
    let id = ids.get(buffer);
    if (id === undefined) {
      id = nextId++;
      ids.set(buffer, id);
      port1.postMessage({ id, buffer });
    }
    return id;
  };
  /** A marker that ends a stream: a slot like a block's, handed back with nothing to do. */
  const end = (id: number) => {
    pending.push({ done: noop });
    publish(id, 0);
  };
  // The blob's pieces of shared memory, made at its first chunk; the free ones by index.
  let stage: Buffer | undefined;
  const free: number[] = [];
  const blob: BlobHash | undefined = o.blob !== true ? undefined : {
    async add(chunk) {
      if (!stage) {
        stage = Buffer.from(new SharedArrayBuffer(STAGE_PIECES * STAGE_PIECE));
        for (let i = STAGE_PIECES - 1; i >= 0; i--) free.push(i);
      }
      const id = idOf(stage.buffer as SharedArrayBuffer);
      for (let off = 0; off < chunk.length; off += STAGE_PIECE) {
        collect();
        while (free.length === 0) {
          // Every piece is waiting for the worker: wake when it reads on (or every 100 ms, to
          // notice a worker that stopped).
          const err = broken();
          if (err) throw err;
          traceAdd('hash.blob.wait', 1);
          const r = (Atomics as unknown as WaitAsync).waitAsync(words, READ, read, 100);
          if (r.async) await r.value;
          collect();
        }
        const piece = free.pop()!;
        const n = Math.min(STAGE_PIECE, chunk.length - off);
        stage.set(chunk.subarray(off, off + n), piece * STAGE_PIECE);
        pending.push({ done: () => free.push(piece) });
        publish(id, n, BLOB, piece * STAGE_PIECE);
      }
      traceAdd('hash.blob', chunk.length);
    },
    end() {
      const err = broken();
      if (err) return Promise.reject(err);
      end(BLOB_END);
      return blobHex;
    },
  };
  return {
    fail,
    shared: true,
    blob,
    add(block, done) {
      if (failed) throw failed;
      collect();
      let buffer = block.buffer;
      if (!(buffer instanceof SharedArrayBuffer) || block.byteOffset !== 0) {
        buffer = new SharedArrayBuffer(block.length);
        new Uint8Array(buffer).set(block);
        done();
        done = noop;
      }
      const id = idOf(buffer);
      traceAdd('hash.worker', block.length);
      if (!keyed) {
        pending.push({ done });
        publish(id, block.length);
        return undefined;
      }
      const key = new Promise<Buffer>((resolve, lost) => pending.push({ done, key: resolve, lost }));
      key.catch(noop); // seen where it is awaited; this only keeps it from counting as unhandled
      waiting++;
      publish(id, block.length);
      watch();
      return key;
    },
    digest() {
      return new Promise<StreamDigest>((resolve, reject) => {
        if (failed) return reject(failed);
        finish = {
          resolve: (d) => {
            collect();
            resolve(d);
          },
          reject,
        };
        end(END);
      });
    },
    close() {
      failed ??= new Error('the hashing worker was closed');
      stop();
    },
  };
}

const noop = (): void => undefined;
/** Atomics.waitAsync (in Node since 16; in TypeScript's ES2024 library, past this project's). */
interface WaitAsync {
  waitAsync(a: Int32Array, index: number, value: number, timeout?: number): { async: false; value: string } | { async: true; value: Promise<string> };
}
const DONE = { done: noop };
