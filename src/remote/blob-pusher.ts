import type { BlobSource } from '../oci/pushable.js';
import type { Digest } from '../oci/digest.js';
import type { Reference } from '../reference/reference.js';
import type { RegistryClient } from './client.js';
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
  private readonly transfers: Limiter;
  private failed = false;
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

  /** Whether a push of this blob was started. */
  has(digest: Digest): boolean {
    return this.started.has(digest);
  }

  /**
   * A blob someone else already put there (the registry cache mounted it while looking it up):
   * its push is that outcome, and no request is sent for it.
   */
  settle(digest: Digest, outcome: PushOutcome): void {
    if (!this.started.has(digest)) this.started.set(digest, Promise.resolve(outcome));
  }

  /** The push of this blob: started now if it was not yet, else the one already under way or done. */
  push(blob: BlobSource): Promise<PushOutcome> {
    const digest = blob.descriptor.digest;
    let p = this.started.get(digest);
    if (!p) {
      p = this.run(blob);
      // Whoever asks for the outcome sees a failure; a push started early and never asked about
      // again (the publish failed elsewhere first) must not end the process as unhandled.
      p.catch(() => undefined);
      this.started.set(digest, p);
    }
    return p;
  }

  private async run(blob: BlobSource): Promise<PushOutcome> {
    try {
      if (this.failed) throw new Error('not started: another blob push of this image failed');
      return await this.client.pushBlob(this.repo, blob, this.transfers);
    } catch (err) {
      if (!this.failed) this.fail(err);
      this.failed = true;
      throw err;
    }
  }
}
