/** Serializes async critical sections (FIFO). */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  private held = 0;
  /** a section runs or waits */
  get locked(): boolean {
    return this.held > 0;
  }
  lock<T>(fn: () => Promise<T>): Promise<T> {
    this.held++;
    const run = this.tail.then(fn, fn).finally(() => this.held--);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/** At most `n` of the given jobs at once; the rest wait their turn in order. */
export class Semaphore {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly n: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.n) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}
