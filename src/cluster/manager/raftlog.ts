// The raft log and the state machine on the manager's SQLite store. The leader's writes enter
// the log in the transaction that makes them; followers replay write sets in a transaction that
// also moves the applied index; snapshots are the replicated tables' rows.
import type { Ahead, Entry, Raft, RaftSnapshot, RaftStore } from '../raft/raft.js';
import { STATE_TABLES, type Store, type WriteOp } from './store.js';

interface Row {
  idx: number;
  term: number;
  data: string | null;
}

export class StoreRaftLog implements RaftStore {
  constructor(private readonly store: Store) {}

  /** Routes the store's transactions through raft: a write on a non-leader throws and rolls back. */
  attach(raft: Raft): void {
    this.store.journal = {
      record: (ops) => {
        const term = raft.leaderTerm();
        const index = this.lastIndex() + 1;
        this.insert({ index, term, data: ops });
        this.setState('applied', index);
      },
      committed: () => raft.appended(),
    };
  }

  private get db() {
    return this.store.db;
  }
  private getState(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM raft_state WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }
  private setState(key: string, value: string | number): void {
    this.db.prepare('INSERT INTO raft_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, String(value));
  }
  private num(key: string): number {
    return Number(this.getState(key) ?? '0');
  }
  private insert(e: Entry): void {
    this.db.prepare('INSERT OR REPLACE INTO raft_log (idx, term, data) VALUES (?, ?, ?)').run(e.index, e.term, e.data === null ? null : JSON.stringify(e.data));
  }

  hardState(): { term: number; vote: string } {
    return { term: this.num('term'), vote: this.getState('vote') ?? '' };
  }
  setHardState(term: number, vote: string): void {
    this.db.transaction(() => {
      this.setState('term', term);
      this.setState('vote', vote);
    })();
  }
  snapIndex(): number {
    return this.num('snap_index');
  }
  snapTerm(): number {
    return this.num('snap_term');
  }
  lastIndex(): number {
    const r = this.db.prepare('SELECT MAX(idx) AS i FROM raft_log').get() as { i: number | null };
    return r.i ?? this.snapIndex();
  }
  termAt(index: number): number | undefined {
    if (index === this.snapIndex()) return this.snapTerm();
    return (this.db.prepare('SELECT term FROM raft_log WHERE idx = ?').get(index) as { term: number } | undefined)?.term;
  }
  entries(from: number, maxBytes: number): Entry[] {
    const out: Entry[] = [];
    let bytes = 0;
    for (const r of this.db.prepare('SELECT idx, term, data FROM raft_log WHERE idx >= ? ORDER BY idx LIMIT 1000').iterate(from) as IterableIterator<Row>) {
      bytes += (r.data?.length ?? 0) + 32;
      if (out.length && bytes > maxBytes) break;
      out.push({ index: r.idx, term: r.term, data: r.data === null ? null : JSON.parse(r.data) });
    }
    return out;
  }
  appendEntries(entries: Entry[]): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM raft_log WHERE idx >= ?').run(entries[0]!.index);
      for (const e of entries) this.insert(e);
    })();
  }
  appendNoop(term: number): number {
    return this.db.transaction(() => {
      const index = this.lastIndex() + 1;
      this.insert({ index, term, data: null });
      // A no-op changes nothing, so the leader's state already reflects it.
      if (this.appliedIndex() === index - 1) this.setState('applied', index);
      return index;
    })();
  }
  appliedIndex(): number {
    return this.num('applied');
  }
  apply(entries: Entry[]): void {
    this.db.transaction(() => {
      for (const e of entries) {
        if (e.data) this.store.replay(e.data as WriteOp[]);
        this.setState('applied', e.index);
      }
    })();
  }
  snapshot(): RaftSnapshot {
    const index = this.appliedIndex();
    const tables: Record<string, unknown[]> = {};
    for (const t of STATE_TABLES) tables[t] = this.db.prepare(`SELECT * FROM ${t}`).all();
    return { index, term: this.termAt(index) ?? 0, state: tables };
  }
  restore(s: RaftSnapshot): void {
    const tables = s.state as Record<string, Record<string, unknown>[]>;
    this.db.transaction(() => {
      for (const t of STATE_TABLES) {
        this.db.prepare(`DELETE FROM ${t}`).run();
        for (const row of tables[t] ?? []) {
          const cols = Object.keys(row);
          if (!cols.every((c) => /^[a-z_]+$/.test(c))) throw new Error(`bad column in snapshot of ${t}`);
          this.db.prepare(`INSERT INTO ${t} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`).run(...cols.map((c) => row[c]));
        }
      }
      this.db.prepare('DELETE FROM raft_log').run();
      this.setState('snap_index', s.index);
      this.setState('snap_term', s.term);
      this.setState('applied', s.index);
      this.db.prepare("DELETE FROM raft_state WHERE key = 'ahead'").run();
    })();
  }
  compact(index: number): void {
    const term = this.termAt(index);
    if (term === undefined) return;
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM raft_log WHERE idx <= ?').run(index);
      this.setState('snap_index', index);
      this.setState('snap_term', term);
    })();
  }
  fresh(): boolean {
    return this.appliedIndex() === 0 && this.snapIndex() === 0 && this.store.getCluster() === undefined;
  }
  ahead(): Ahead | undefined {
    const v = this.getState('ahead');
    return v ? (JSON.parse(v) as Ahead) : undefined;
  }
  epoch(): string {
    return this.getState('epoch') ?? '';
  }
  setEpoch(epoch: string): void {
    this.setState('epoch', epoch);
  }
  setAhead(a: Ahead | undefined): void {
    if (a) this.setState('ahead', JSON.stringify(a));
    else this.db.prepare("DELETE FROM raft_state WHERE key = 'ahead'").run();
  }
}
