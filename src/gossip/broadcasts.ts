// The piggyback queue: each item rides on outgoing packets until it has been sent
// `limit` times; a newer item with the same key replaces an older one.
export interface Queued<T> {
  key: string;
  item: T;
  transmits: number;
  /** tie-breaker: newer first among equal transmit counts */
  id: number;
}

export class BroadcastQueue<T> {
  private readonly items = new Map<string, Queued<T>>();
  private nextId = 0;

  push(key: string, item: T): void {
    this.items.set(key, { key, item, transmits: 0, id: this.nextId++ });
  }

  get size(): number {
    return this.items.size;
  }

  /** Up to `max` items, least-sent first; each taken item counts one transmission. */
  take(max: number, limit: number): T[] {
    if (!this.items.size) return [];
    const picked = [...this.items.values()].sort((a, b) => a.transmits - b.transmits || b.id - a.id).slice(0, max);
    for (const q of picked) {
      q.transmits++;
      if (q.transmits >= limit) this.items.delete(q.key);
    }
    return picked.map((q) => q.item);
  }

  clear(): void {
    this.items.clear();
  }
}
