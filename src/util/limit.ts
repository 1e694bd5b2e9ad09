/**
 * At most `size` calls of `run` at once; the others wait their turn in order. A finished call
 * hands its slot straight to the next waiter: freeing it first would let a call arriving in
 * between take it too, one over the limit.
 */
export class Limiter {
  private running = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly size: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= Math.max(1, this.size)) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.running++;
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.running--;
    }
  }
}

/**
 * Runs `work` over `items` with at most `limit` in flight. The first failure stops new starts and
 * is thrown once the running ones settle, so no upload or write is left running behind a returned
 * error. (Limiter is for work that arrives over time; this is for a list known up front.)
 */
export async function runBounded<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      const item = items[next++] as T;
      try {
        await work(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.err;
}
