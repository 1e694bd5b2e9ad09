import { observedBlob } from '../image/blobs.js';
import type { BlobSource, Pushable, PushableManifest } from '../oci/pushable.js';
import { type Output, formatBytes } from './output.js';

/**
 * What a long publish or push is doing, for the one-line status on a terminal: the phase, layers
 * done of layers to do, bytes read, bytes compressed of the layers' sizes (in total and per layer
 * being compressed), bytes uploaded of the bytes being uploaded and the rate, and the time so far. The line is redrawn every half second even when no byte moved, so a slow step
 * (compressing a big layer) shows its clock running instead of a frozen count. Each phase that
 * ends leaves one line behind. Nothing is drawn off a terminal or in CI (Output.showProgress).
 */
export class Progress {
  private phaseName = '';
  private phaseStart = Date.now();
  private readonly start = Date.now();
  private layersDone = 0;
  private layersTotal = 0;
  /** Publish: each layer by its label, its files' bytes read of expected, then its state. */
  private readonly layers = new Map<string, { read: number; expected: number; state: string; sent: number; size: number }>();
  private read = 0;
  private readExpected = 0;
  private sent = 0;
  private sending = 0;
  private firstSend = 0;
  private compressed = 0;
  private compressExpected = 0;
  /** Layers being compressed now: bytes taken in, of their size. */
  private readonly inFlight = new Map<string, { done: number; size: number }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly out: Output) {}

  /** Starts a phase; the previous one, if any, leaves its line. */
  phase(name: string): void {
    this.endPhase();
    this.phaseName = name;
    this.phaseStart = Date.now();
    if (this.out.showProgress && !this.timer) {
      this.timer = setInterval(() => this.draw(true), 500);
      this.timer.unref();
    }
    this.draw(true);
  }

  /** Ends the current phase: one line saying what it did and how long it took (terminal only). */
  endPhase(detail?: string): void {
    if (!this.phaseName) return;
    if (this.out.showProgress) this.out.info(`${this.phaseName}: ${detail ?? 'done'} (${seconds(Date.now() - this.phaseStart)})`);
    this.phaseName = '';
  }

  /** Stops the clock; the caller's summary line follows. */
  stop(): void {
    if (this.timer) this.draw(true); // the last counts, seen at least once
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.out.clearProgress();
  }

  layersToDo(n: number): void {
    this.layersTotal = n;
    this.draw();
  }

  /** A layer is ready: built now, or found in a cache. */
  layerDone(label: string, state: 'built' | 'cached'): void {
    this.layersDone++;
    this.layer(label).state = state;
    this.draw();
  }

  /** A layer must be tarred: the bytes of its files that layerRead() will count (publish). */
  layerExpected(label: string, n: number): void {
    this.layer(label).expected += n;
    this.bytesExpected(n);
  }

  /** Bytes of a layer's files read; the total counts them too. */
  layerRead(label: string, n: number): void {
    this.layer(label).read += n;
    this.bytesRead(n);
  }

  /** A layer's blob starts uploading (its size), or bytes of it were sent; the total counts them too. */
  layerUploadStarted(label: string, size: number): void {
    this.layer(label).size += size;
    this.uploadStarted(size);
  }

  layerUploaded(label: string, n: number): void {
    this.layer(label).sent += n;
    this.uploaded(n);
  }

  private layer(label: string) {
    let l = this.layers.get(label);
    if (!l) this.layers.set(label, (l = { read: 0, expected: 0, state: '', sent: 0, size: 0 }));
    return l;
  }

  bytesRead(n: number, expected?: number): void {
    this.read += n;
    if (expected !== undefined) this.readExpected = expected;
    this.draw();
  }

  /**
   * One layer's compression: bytes taken in so far, of its size. The slow step of a first archive
   * push, after the archive itself was read: shown per layer and in total, so it never looks stuck.
   */
  layerCompressing(e: { diffid: string; done: number; size: number }): void {
    const { done, size } = e;
    const id = `layer ${e.diffid.slice('sha256:'.length, 'sha256:'.length + 12)}`;
    let layer = this.inFlight.get(id);
    if (!layer) {
      layer = { done: 0, size };
      this.inFlight.set(id, layer);
      this.compressExpected += size;
    }
    this.compressed += done - layer.done;
    layer.done = done;
    if (done >= size) this.inFlight.delete(id);
    this.draw();
  }

  /** More bytes to read: a layer whose files are about to be tarred (publish). */
  bytesExpected(n: number): void {
    this.readExpected += n;
    this.draw();
  }

  /** A blob whose upload has started counts its size toward the bytes expected. */
  uploadStarted(size: number): void {
    if (this.firstSend === 0) this.firstSend = Date.now();
    this.sending += size;
  }

  /** Bytes of a blob sent. */
  uploaded(n: number): void {
    this.sent += n;
    // The last bytes are always drawn: a quick upload would otherwise end between two draws.
    this.draw(this.sent >= this.sending);
  }

  /** The same blob, counting the bytes read from it by an upload. */
  counting(blob: BlobSource): BlobSource {
    if (!this.out.showProgress) return blob;
    return observedBlob(blob, (size) => this.uploadStarted(size), (n) => this.uploaded(n));
  }

  /** The same image, its blobs counted as they are uploaded. */
  countingImage(image: Pushable): Pushable {
    if (!this.out.showProgress) return image;
    const m = (x: PushableManifest): PushableManifest => ({ ...x, config: this.counting(x.config), layers: x.layers.map((l) => this.counting(l)) });
    return image.kind === 'manifest' ? m(image) : { ...image, manifests: image.manifests.map(m) };
  }

  /** Bytes uploaded so far (of blobs opened through counting()). */
  get uploadedBytes(): number {
    return this.sent;
  }

  private draw(force = false): void {
    if (!this.out.showProgress) return;
    // Most telling first: the line is cut to the terminal's width.
    const text = () => {
      const parts = [`${this.phaseName || 'working'} ${seconds(Date.now() - this.start)}`];
      if (this.sending) {
        const secs = (Date.now() - this.firstSend) / 1000;
        const rate = secs > 0 && this.sent > 0 ? ` at ${formatBytes(this.sent / secs)}/s` : '';
        parts.push(`uploaded ${formatBytes(this.sent)} of ${formatBytes(this.sending)}${rate}`);
      }
      if (this.compressExpected) {
        const layers = [...this.inFlight].map(([id, l]) => `${id} ${formatBytes(l.done)} of ${formatBytes(l.size)}`);
        parts.push(`compressed ${formatBytes(this.compressed)} of ${formatBytes(this.compressExpected)}${layers.length ? ` (${layers.join(', ')})` : ''}`);
      }
      if (this.read) parts.push(this.readExpected ? `read ${formatBytes(this.read)} of ${formatBytes(this.readExpected)}` : `read ${formatBytes(this.read)}`);
      if (this.layersTotal) {
        const each = [...this.layers].map(([label, l]) => {
          const bits = [label];
          if (l.expected) bits.push(`${formatBytes(l.read)} of ${formatBytes(l.expected)}`);
          if (l.state) bits.push(l.state);
          if (l.size) bits.push(l.sent >= l.size ? 'uploaded' : `uploading ${formatBytes(l.sent)} of ${formatBytes(l.size)}`);
          return bits.join(' ');
        });
        parts.push(`layers ${this.layersDone}/${this.layersTotal}${each.length ? ` (${each.join(', ')})` : ''}`);
      }
      return parts.join(' · ');
    };
    if (force) this.out.redraw(text);
    else this.out.progress(text);
  }
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}
