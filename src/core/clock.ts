// Time as a seam: the real clock, and a fake one that runs hundreds of nodes deterministically.
export interface Timer {
  cancel(): void;
}

export interface Clock {
  now(): number;
  after(ms: number, fn: () => void): Timer;
}

export const realClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** Timers fire only when advance() moves time past them, in time order (then creation order). */
export class FakeClock implements Clock {
  private t = 0;
  private seq = 0;
  private heap: Pending[] = [];

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): Timer {
    const p: Pending = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.push(p);
    return { cancel: () => void (p.cancelled = true) };
  }

  /**
   * Runs every timer due up to now + ms (including ones those timers schedule). After each
   * instant's timers it lets pending promise callbacks run, so async code between timers
   * proceeds as it would in real time.
   */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const top = this.heap[0];
      if (!top || top.at > end) break;
      const at = top.at;
      while (this.heap[0] && this.heap[0].at === at) {
        const p = this.heap[0];
        this.pop();
        if (p.cancelled) continue;
        this.t = at;
        p.fn();
      }
      await new Promise<void>((r) => setImmediate(r));
    }
    this.t = end;
  }

  get pending(): number {
    return this.heap.filter((p) => !p.cancelled).length;
  }

  private less(a: Pending, b: Pending): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }
  private push(p: Pending): void {
    const h = this.heap;
    h.push(p);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }
  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (!h.length) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
      if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}
