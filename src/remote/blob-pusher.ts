import type { BlobSource } from '../image/pushable.js';
import type { Digest } from '../oci/digest.js';
import type { Reference } from '../reference/reference.js';
import type { RegistryClient } from './client.js';

export type PushOutcome = 'present' | 'mounted' | 'uploaded';

/**
 * The blob pushes of one image to one repository, each started once and as early as its blob is
 * known: `kocache publish` hands a layer over the moment it is built, so its upload runs while
 * the other layers are still compressing, and pushImage later asks for every blob of the finished
 * image and gets the same push (and its outcome, for the counts) instead of a second one.
 * At most `jobs` transfers run at once; after the first failure no queued push starts.
 */
export class BlobPusher {
  private readonly started = new Map<Digest, Promise<PushOutcome>>();
  private readonly queue: (() => void)[] = [];
  private running = 0;
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
    private readonly jobs: number,
  ) {
    this.failure.catch(() => undefined);
  }

  /** Whether a push of this blob was started. */
  has(digest: Digest): boolean {
    return this.started.has(digest);
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
    if (this.running >= Math.max(1, this.jobs)) await new Promise<void>((resolve) => this.queue.push(resolve));
    this.running++;
    try {
      if (this.failed) throw new Error('not started: another blob push of this image failed');
      return await this.client.pushBlob(this.repo, blob);
    } catch (err) {
      if (!this.failed) this.fail(err);
      this.failed = true;
      throw err;
    } finally {
      this.running--;
      this.queue.shift()?.();
    }
  }
}
