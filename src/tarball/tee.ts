/**
 * Splits one async stream into `n` streams that each see every chunk, reading the source once.
 * A branch may run at most `lead` chunks ahead of the slowest one, so memory stays bounded by
 * `lead` chunks whatever the consumers' speeds. A branch whose consumer stops early (breaks out of
 * its loop, or fails) is detached and no longer holds the others back; the source is released
 * when every branch has finished or detached.
 */
export function tee<T>(source: AsyncIterable<T>, n: number, lead = 4): AsyncIterable<T>[] {
  const shared = new SharedSource(source[Symbol.asyncIterator](), n, lead);
  return Array.from({ length: n }, (_, i) => ({
    [Symbol.asyncIterator]: (): AsyncIterator<T> => ({
      next: () => shared.next(i),
      return: async () => {
        shared.detach(i);
        return { done: true, value: undefined };
      },
    }),
  }));
}

class SharedSource<T> {
  private readonly buf: T[] = [];
  /** Stream position of buf[0]. */
  private base = 0;
  private readonly pos: number[];
  private readonly active: boolean[];
  private ended = false;
  private failed: { error: unknown } | undefined;
  private pulling: Promise<void> | undefined;
  private waiters: (() => void)[] = [];

  constructor(private readonly it: AsyncIterator<T>, n: number, private readonly lead: number) {
    this.pos = new Array<number>(n).fill(0);
    this.active = new Array<boolean>(n).fill(true);
  }

  async next(i: number): Promise<IteratorResult<T>> {
    for (;;) {
      const p = this.pos[i]!;
      if (p < this.base + this.buf.length) {
        const value = this.buf[p - this.base] as T;
        this.pos[i] = p + 1;
        this.trim();
        return { done: false, value };
      }
      if (this.failed) throw this.failed.error;
      if (this.ended) {
        this.detach(i);
        return { done: true, value: undefined };
      }
      if (p - this.slowest() >= this.lead) {
        await new Promise<void>((resolve) => this.waiters.push(resolve));
        continue;
      }
      this.pulling ??= this.pull();
      await this.pulling;
    }
  }

  detach(i: number): void {
    if (!this.active[i]) return;
    this.active[i] = false;
    this.trim();
    if (!this.active.some(Boolean) && !this.ended && !this.failed) {
      this.ended = true;
      void this.it.return?.();
    }
  }

  private async pull(): Promise<void> {
    try {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else this.buf.push(r.value);
    } catch (error) {
      this.failed = { error };
    } finally {
      this.pulling = undefined;
      this.wake();
    }
  }

  private slowest(): number {
    let min = Infinity;
    this.active.forEach((a, i) => {
      if (a) min = Math.min(min, this.pos[i]!);
    });
    return min;
  }

  private trim(): void {
    const min = Math.min(this.slowest(), this.base + this.buf.length);
    while (this.base < min) {
      this.buf.shift();
      this.base++;
    }
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
