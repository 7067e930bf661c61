// etcd's contract in memory, for deterministic tests of the store and the control loops: one
// revision counter, compares on MOD and CREATE revisions (of a key or a range), watches that
// deliver each revision's events in order, and leases that expire when a test says so.
import {
  NotSentError,
  OutcomeUnknownError,
  prefixEnd,
  type Compare,
  type Kv,
  type KvEntry,
  type Op,
  type Watch,
  type WatchEvent,
  type WatchHandlers,
} from './kv.js';

interface Watcher {
  prefix: string;
  end: string;
  h: WatchHandlers;
}

export class MemKv implements Kv {
  private readonly data = new Map<string, KvEntry>();
  private readonly watchers = new Set<Watcher>();
  private readonly leases = new Map<string, number>();
  private nextLease = 1;
  rev = 1;
  /** while set, calls fail as etcd does without a quorum */
  down = false;

  private check(): void {
    if (this.down) throw new Error('etcd unavailable (test)');
  }

  range(prefix: string): Promise<{ rev: number; kvs: KvEntry[] }> {
    this.check();
    const end = prefixEnd(prefix);
    const kvs = [...this.data.values()].filter((e) => e.key >= prefix && e.key < end).sort((a, b) => (a.key < b.key ? -1 : 1));
    return Promise.resolve({ rev: this.rev, kvs: kvs.map((e) => ({ ...e })) });
  }

  private holds(c: Compare): boolean {
    const keys = c.rangeEnd !== undefined ? [...this.data.values()].filter((e) => e.key >= c.key && e.key < c.rangeEnd!) : [this.data.get(c.key)];
    const values = keys.map((e) => (e ? (c.target === 'MOD' ? e.mod : e.create) : 0));
    if (!values.length) values.push(0);
    return values.every((v) => (c.result === 'EQUAL' ? v === c.rev : v < c.rev));
  }

  /**
   * What the next txns meet, one entry each: `lost` commits it and loses the answer, `dropped`
   * loses the request (etcd's leader vanished), `refused` never reaches etcd.
   */
  faults: ('lost' | 'dropped' | 'refused')[] = [];

  txn(compares: Compare[], ops: Op[], _timeoutMs?: number): Promise<{ ok: boolean; rev: number }> {
    this.check();
    const fault = this.faults.shift();
    if (fault === 'refused') return Promise.reject(new NotSentError('etcd refused the connection (test)'));
    if (fault === 'dropped') return Promise.reject(new OutcomeUnknownError('no answer (test): the outcome is unknown'));
    if (!compares.every((c) => this.holds(c))) return Promise.resolve({ ok: false, rev: this.rev });
    if (ops.length) this.apply(ops);
    if (fault === 'lost') return Promise.reject(new OutcomeUnknownError('answer lost (test): the outcome is unknown'));
    return Promise.resolve({ ok: true, rev: this.rev });
  }

  private apply(ops: Op[]): void {
    const rev = ++this.rev;
    const events: WatchEvent[] = [];
    for (const op of ops) {
      if ('put' in op) {
        if (op.lease && !this.leases.has(op.lease)) throw new Error('lease not found');
        const old = this.data.get(op.put);
        const e: KvEntry = { key: op.put, value: op.value, mod: rev, create: old?.create ?? rev, ...(op.lease ? { lease: op.lease } : {}) };
        this.data.set(op.put, e);
        events.push({ type: 'put', key: e.key, value: e.value, mod: rev, create: e.create });
      } else if (this.data.delete(op.del)) events.push({ type: 'delete', key: op.del, value: '', mod: rev, create: 0 });
    }
    // Delivered on a later tick, as a real watch is.
    setImmediate(() => {
      for (const w of this.watchers) {
        const mine = events.filter((e) => e.key >= w.prefix && e.key < w.end);
        if (mine.length) w.h.events(mine, rev);
      }
    });
  }

  watch(prefix: string, fromRev: number, h: WatchHandlers): Watch {
    const w: Watcher = { prefix, end: prefixEnd(prefix), h };
    // History is not kept: a watch from the past gets the current values at once.
    const upTo = this.rev;
    if (fromRev <= upTo) {
      const past = [...this.data.values()].filter((e) => e.mod >= fromRev && e.key >= prefix && e.key < w.end);
      if (past.length)
        setImmediate(() =>
          h.events(
            past.map((e) => ({ type: 'put', key: e.key, value: e.value, mod: e.mod, create: e.create })),
            upTo,
          ),
        );
    }
    this.watchers.add(w);
    return { close: () => this.watchers.delete(w) };
  }

  leaseGrant(): Promise<string> {
    this.check();
    const id = String(this.nextLease++);
    this.leases.set(id, 1);
    return Promise.resolve(id);
  }

  leaseKeepAlive(id: string): Promise<number> {
    this.check();
    return Promise.resolve(this.leases.has(id) ? 2 : 0);
  }

  leaseRevoke(id: string): Promise<void> {
    this.expire(id);
    return Promise.resolve();
  }

  /** The lease runs out: its keys go, in one revision. */
  expire(id: string): void {
    if (!this.leases.delete(id)) return;
    const keys = [...this.data.values()].filter((e) => e.lease === id).map((e) => e.key);
    if (keys.length) this.apply(keys.map((k) => ({ del: k })));
  }

  close(): void {
    this.watchers.clear();
  }
}
