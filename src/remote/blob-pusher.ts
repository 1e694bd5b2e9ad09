import type { BlobSource } from '../oci/pushable.js';
import type { Digest } from '../oci/digest.js';
import type { BlobSink } from '../oci/sink.js';
import type { Reference } from '../reference/reference.js';
import type { RegistryClient } from './client.js';
import type { HeldSession } from './upload.js';
import { Limiter } from '../util/limit.js';

export type PushOutcome = 'present' | 'mounted' | 'uploaded';

/**
 * The blob pushes of one image to one repository, each started once and as early as its blob is
 * known: `kocache publish` hands a layer over the moment it is built, so its upload runs while
 * the other layers are still compressing, and pushImage later asks for every blob of the finished
 * image and gets the same push (and its outcome, for the counts) instead of a second one.
 * At most `jobs` uploads run at once; the HEADs, and the mounts of blobs known elsewhere on the
 * registry, are not held to that (only to the HTTP client's connections per registry): asking
 * `jobs` at a time cost a round trip per `jobs` blobs, for blobs the registry mostly has. After the first failure no push starts.
 */
export class BlobPusher {
  private readonly started = new Map<Digest, Promise<PushOutcome>>();
  /** Blobs sent while built (stream), by digest: whether the registry took them. */
  private readonly streamed = new Map<Digest, Promise<boolean>>();
  private readonly transfers: Limiter;
  private failed = false;
  private held: HeldSession | undefined;
  private fail!: (err: unknown) => void;
  /**
   * Rejects with the first push failure, for callers with other work under way that is pointless
   * once a push failed (publish stops waiting for its builds: wrong credentials should not cost
   * the whole build first).
   */
  readonly failure: Promise<never> = new Promise<never>((_, reject) => {
    this.fail = reject;
  });

  constructor(
    private readonly client: RegistryClient,
    private readonly repo: Reference,
    jobs: number,
  ) {
    this.transfers = new Limiter(jobs);
    this.failure.catch(() => undefined);
  }

  /**
   * Opens an upload session now for the next small blob pushed (the image config, made once the
   * layers are): called once the target is known to lack the image.
   */
  hold(): void {
    this.held ??= this.client.holdSession(this.repo);
  }

  /** Deletes a session held and never used (best effort). */
  async release(): Promise<void> {
    await this.held?.release();
  }

  /** Whether a push of this blob was started. */
  has(digest: Digest): boolean {
    return this.started.has(digest) || this.streamed.has(digest);
  }

  /**
   * A place for the bytes of a blob being built, uploaded as they come; its push is then that
   * upload, or (should the stream have been given up) an ordinary push from the content store.
   * `counted` hears of the bytes as an upload of the blob would tell them, once its size is known.
   */
  stream(counted?: { opened: (size: number) => void; read: (bytes: number) => void }): BlobSink {
    let early = 0;
    let told = false;
    const up = this.client.streamBlob(this.repo, (n) => {
      if (told) return counted?.read(n);
      // The upload's clock starts with its first bytes; their count waits for the blob's size.
      if (early === 0) counted?.opened(0);
      early += n;
    });
    return {
      write: (chunk) => up.write(chunk),
      abort: () => up.abort(),
      end: (blob) => {
        up.end(blob);
        if (!up.alive || this.has(blob.digest)) return;
        this.streamed.set(blob.digest, up.committed.then((b) => b !== undefined));
        counted?.opened(blob.size);
        if (early > 0) counted?.read(early);
        told = true;
      },
    };
  }

  /**
   * A blob someone else puts there (the registry cache mounts it while the image is made): its
   * push is that outcome, and no request is sent for it. A promise that rejects fails the push.
   */
  settle(digest: Digest, outcome: PushOutcome | Promise<PushOutcome>): void {
    if (this.started.has(digest)) return;
    const p = Promise.resolve(outcome);
    p.catch(() => undefined);
    this.started.set(digest, p);
  }

  /**
   * The push of this blob: started now if it was not yet, else the one already under way or done.
   * `ahead`: the blob may go into the session held (an image config: small, its bytes at hand).
   */
  push(blob: BlobSource, o: { ahead?: boolean } = {}): Promise<PushOutcome> {
    const digest = blob.descriptor.digest;
    let p = this.started.get(digest);
    if (!p) {
      const streamed = this.streamed.get(digest);
      p = streamed ? streamed.then((sent) => (sent ? 'uploaded' : this.run(blob, o.ahead === true))) : this.run(blob, o.ahead === true);
      // Whoever asks for the outcome sees a failure; a push started early and never asked about
      // again (the publish failed elsewhere first) must not end the process as unhandled.
      p.catch(() => undefined);
      this.started.set(digest, p);
    }
    return p;
  }

  private async run(blob: BlobSource, ahead: boolean): Promise<PushOutcome> {
    try {
      if (this.failed) throw new Error('not started: another blob push of this image failed');
      return await this.client.pushBlob(this.repo, blob, this.transfers, ahead ? this.held : undefined);
    } catch (err) {
      if (!this.failed) this.fail(err);
      this.failed = true;
      throw err;
    }
  }
}
