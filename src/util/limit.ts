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
