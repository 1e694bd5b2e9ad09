import { createHash } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { traceAdd } from '../util/trace.js';

/**
 * The sha256 of a stream of blocks (a layer's tar: its diffid), on this thread or on a worker of
 * its own. A block is handed over as it is, never copied, and handed back through `done` once the
 * hash has read it: only then may its buffer be filled again (blockpool.ts).
 */
export interface StreamHash {
  /** Whether blocks should live in shared memory (a buffer the worker can read where it is). */
  readonly shared: boolean;
  add(block: Buffer, done: () => void): void;
  /** The hex digest of everything added, once the hash has read it all. */
  digest(): Promise<string>;
  /** Stops the worker, if any, whether or not the digest was asked for (a failed pack). */
  close(): void;
}

/** The hash on the calling thread: each block is read at once. */
export function localHash(): StreamHash {
  const hash = createHash('sha256');
  return {
    shared: false,
    add(block, done) {
      hash.update(block);
      done();
    },
    digest: async () => hash.digest('hex'),
    close: () => undefined,
  };
}

/** Blocks handed over but not yet read that the ring can hold; then the producer waits. */
const RING = 256;
// Shared control words: blocks published, blocks read, whether the worker failed, then RING
// (buffer id, length) pairs.
const WRITTEN = 0;
const READ = 1;
const FAILED = 2;
const SLOTS = 3;
/** A buffer id that ends the stream. */
const END = -1;

// CommonJS, run with `eval`: the CLI is one bundled file, so there is no module path to start.
// No message per block (a postMessage carrying a SharedArrayBuffer cost ~0.4 ms of the main
// thread): blocks are published in a ring of shared words, and each buffer is sent once, on a
// port the worker reads synchronously when it meets a buffer id it does not know yet.
const WORKER_SOURCE = `
const { parentPort, workerData, receiveMessageOnPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { control, port, ring } = workerData;
const words = new Int32Array(control);
const buffers = new Map();
const hash = createHash('sha256');
let read = 0;
try {
for (;;) {
  const written = Atomics.load(words, ${WRITTEN});
  if (read === written) {
    Atomics.wait(words, ${WRITTEN}, written);
    continue;
  }
  const slot = ${SLOTS} + (read % ring) * 2;
  const id = words[slot];
  if (id === ${END}) break;
  while (!buffers.has(id)) {
    const got = receiveMessageOnPort(port);
    if (got === undefined) throw new Error('block buffer ' + id + ' was never sent');
    buffers.set(got.message.id, got.message.buffer);
  }
  hash.update(new Uint8Array(buffers.get(id), 0, words[slot + 1]));
  Atomics.store(words, ${READ}, ++read);
  Atomics.notify(words, ${READ});
}
} catch (err) {
  // Said in shared memory too: the main thread may be waiting for room in the ring.
  Atomics.store(words, ${FAILED}, 1);
  Atomics.notify(words, ${READ});
  throw err;
}
parentPort.postMessage({ digest: hash.digest('hex') });
`;

/**
 * The hash on a worker thread started now: the blocks must be backed by a SharedArrayBuffer (one
 * that is not is copied into one). The worker's start-up (~30 ms of CPU) is paid on the other core
 * while this one reads and tars; worth it only for a big stream (pack.ts decides).
 */
export function workerHash(): StreamHash {
  const { Worker: WorkerThread, MessageChannel } = process.getBuiltinModule('node:worker_threads');
  const control = new SharedArrayBuffer((SLOTS + RING * 2) * 4);
  const words = new Int32Array(control);
  const { port1, port2 } = new MessageChannel();
  const worker: Worker = new WorkerThread(WORKER_SOURCE, { eval: true, workerData: { control, port: port2, ring: RING }, transferList: [port2] });
  const ids = new WeakMap<SharedArrayBuffer, number>();
  /** `done` of each block published and not yet read, oldest first, from index `head`. */
  const pending: (() => void)[] = [];
  let head = 0;
  let read = 0;
  let written = 0;
  let nextId = 0;
  let failed: Error | undefined;
  let finish: { resolve: (hex: string) => void; reject: (err: Error) => void } | undefined;
  const fail = (err: Error) => {
    failed ??= err;
    finish?.reject(failed);
  };
  worker.on('message', (m: { digest: string }) => finish?.resolve(m.digest));
  worker.on('error', fail);
  worker.on('exit', () => fail(new Error('the hashing worker stopped')));
  /** Hands back the blocks the worker has read since the last look. */
  const collect = () => {
    const now = Atomics.load(words, READ);
    while (read < now) {
      read++;
      pending[head]!();
      pending[head++] = noop;
    }
    if (head > RING) {
      pending.splice(0, head);
      head = 0;
    }
  };
  const publish = (id: number, length: number) => {
    // The ring is full only when the worker has fallen RING blocks behind: wait for it.
    while (written - Atomics.load(words, READ) >= RING) {
      if (failed || Atomics.load(words, FAILED) !== 0) throw failed ?? new Error('the hashing worker failed');
      Atomics.wait(words, READ, Atomics.load(words, READ), 100);
    }
    const slot = SLOTS + (written % RING) * 2;
    words[slot] = id;
    words[slot + 1] = length;
    Atomics.store(words, WRITTEN, ++written);
    Atomics.notify(words, WRITTEN);
  };
  return {
    shared: true,
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
      let id = ids.get(buffer);
      if (id === undefined) {
        id = nextId++;
        ids.set(buffer, id);
        port1.postMessage({ id, buffer });
      }
      pending.push(done);
      traceAdd('hash.worker', block.length);
      publish(id, block.length);
    },
    digest() {
      return new Promise<string>((resolve, reject) => {
        if (failed) return reject(failed);
        finish = {
          resolve: (hex) => {
            collect();
            resolve(hex);
          },
          reject,
        };
        publish(END, 0);
      });
    },
    close() {
      worker.removeAllListeners('exit');
      failed ??= new Error('the hashing worker was closed');
      port1.close();
      void worker.terminate();
    },
  };
}

const noop = (): void => undefined;
