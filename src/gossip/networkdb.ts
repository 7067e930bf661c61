// Network-scoped replicated tables, after Docker's networkdb: per overlay network, tables
// (overlay peers, endpoints) replicated only among the nodes that have joined the network.
// Entries are owned by the node that wrote them, ordered by Lamport time (last writer wins),
// and deletes linger as tombstones for a reap period. A node joining a network, or coming
// back, gets a bulk sync; a periodic anti-entropy sync repairs anything gossip lost.
import { EventEmitter } from 'node:events';
import { BroadcastQueue } from './broadcasts.js';
import { shuffle } from './random.js';
import type { Clock } from '../core/clock.js';
import { retransmitLimit } from './math.js';
import type { Member, Membership } from './membership.js';

export interface Entry {
  table: string;
  nid: string;
  key: string;
  value: unknown;
  owner: string;
  ltime: number;
  deleting: boolean;
  reapAt?: number;
  /** tombstoned here because the owner died, not by the owner: the owner's own word wins ties */
  orphan?: boolean;
}

interface WireEntry {
  tb: string;
  k: string;
  v: unknown;
  o: string;
  lt: number;
  del: boolean;
}

type UserMsg = { k: 'net'; node: string; nid: string; lt: number; leaving: boolean } | { k: 'tbl'; nid: string; evs: WireEntry[] };

interface BulkRequest {
  k: 'bulk';
  nid: string;
  entries: WireEntry[];
}

export interface NetworkDBConfig {
  gossipIntervalMs?: number;
  fanout?: number;
  bulkSyncIntervalMs?: number;
  reapMs?: number;
  retransmitMult?: number;
  rng?: () => number;
}

export interface NetworkDBStats {
  eventsSent: number;
  eventsReceived: number;
  /** table events received, per network (only networks this node is on) */
  receivedByNetwork: Record<string, number>;
  eventsApplied: number;
  rejectedNotMember: number;
  bulkSyncs: number;
}

const MAX_EVENTS_PER_PACKET = 20;
const key3 = (table: string, nid: string, key: string): string => `${table}\u0000${nid}\u0000${key}`;

export class NetworkDB extends EventEmitter {
  private readonly entries = new Map<string, Entry>();
  /** the same entries by table and network: list() is asked per VIP and port at every refresh */
  private readonly byTable = new Map<string, Map<string, Entry>>();

  private setEntry(k: string, e: Entry): void {
    this.entries.set(k, e);
    const t = `${e.table}\u0000${e.nid}`;
    let m = this.byTable.get(t);
    if (!m) this.byTable.set(t, (m = new Map()));
    m.set(k, e);
  }

  private deleteEntry(k: string, e: Entry): void {
    this.entries.delete(k);
    const t = `${e.table}\u0000${e.nid}`;
    const m = this.byTable.get(t);
    m?.delete(k);
    if (m && m.size === 0) this.byTable.delete(t);
  }
  /** network → node → attachment record (Lamport time, leaving) */
  private readonly nets = new Map<string, Map<string, { lt: number; leaving: boolean }>>();
  private readonly queues = new Map<string, BroadcastQueue<WireEntry>>();
  private clockValue: number;
  private readonly timers: Array<{ cancel(): void }> = [];
  private running = false;
  readonly stats: NetworkDBStats = { eventsSent: 0, eventsReceived: 0, receivedByNetwork: {}, eventsApplied: 0, rejectedNotMember: 0, bulkSyncs: 0 };
  private readonly cfg: Required<Omit<NetworkDBConfig, 'rng'>>;
  private readonly rng: () => number;

  constructor(
    private readonly ml: Membership,
    private readonly clock: Clock,
    cfg: NetworkDBConfig = {},
  ) {
    super();
    this.cfg = {
      gossipIntervalMs: cfg.gossipIntervalMs ?? 50,
      fanout: cfg.fanout ?? 3,
      bulkSyncIntervalMs: cfg.bulkSyncIntervalMs ?? 15_000,
      reapMs: cfg.reapMs ?? 30 * 60_000,
      retransmitMult: cfg.retransmitMult ?? 4,
    };
    this.rng = cfg.rng ?? Math.random;
    // Lamport time seeded from the wall clock, so a restarted node writes above its old entries.
    this.clockValue = clock.now();
    ml.delegate = {
      onUser: (from, d) => this.onUser(from, d as UserMsg),
      onUserRequest: (from, d) => ((d as BulkRequest | null)?.k === 'bulk' ? this.onBulk(from, d as BulkRequest) : (this.onRequest?.(from, d) ?? null)),
      localState: () => this.localState(),
      mergeState: (from, s) => this.mergeState(from, s),
    };
    ml.on('dead', (m: Member) => this.nodeGone(m.name));
    ml.on('leave', (m: Member) => this.nodeGone(m.name));
    ml.on('join', (m: Member) => this.nodeBack(m.name));
  }

  /** requests over the stream transport that are not the tables' own (a node's topology): the reply goes back */
  onRequest?: (from: string, data: unknown) => unknown;

  get self(): string {
    return this.ml.name;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop(this.cfg.gossipIntervalMs, () => this.gossip());
    this.loop(this.cfg.bulkSyncIntervalMs, () => this.antiEntropy(), true);
    this.loop(Math.min(5000, this.cfg.reapMs), () => this.reap());
  }

  stop(): void {
    this.running = false;
    for (const t of this.timers) t.cancel();
  }

  private loop(ms: number, fn: () => void, jitter = false): void {
    const again = (): void => {
      if (!this.running) return;
      this.timers.push(
        this.clock.after(jitter ? ms * (0.5 + this.rng()) : ms, () => {
          fn();
          again();
        }),
      );
    };
    again();
  }

  private tick(seen = 0): number {
    this.clockValue = Math.max(this.clockValue, seen, this.clock.now()) + 1;
    return this.clockValue;
  }

  // ---------------------------------------------------------------- networks

  joinNetwork(nid: string): void {
    const lt = this.tick();
    this.nodesOf(nid).set(this.self, { lt, leaving: false });
    this.ml.broadcastUser(`net:${this.self}:${nid}`, { k: 'net', node: this.self, nid, lt, leaving: false });
    // Pull what the network's current members hold.
    for (const peer of this.peers(nid)) void this.bulkSync(nid, peer);
  }

  leaveNetwork(nid: string): void {
    const lt = this.tick();
    this.ml.broadcastUser(`net:${this.self}:${nid}`, { k: 'net', node: this.self, nid, lt, leaving: true });
    for (const e of [...this.entries.values()]) if (e.nid === nid) this.deleteEntry(key3(e.table, e.nid, e.key), e);
    this.nets.delete(nid);
    this.queues.delete(nid);
  }

  inNetwork(nid: string): boolean {
    return this.nets.get(nid)?.get(this.self)?.leaving === false;
  }

  /** Other live nodes attached to the network. */
  peers(nid: string): string[] {
    const nodes = this.nets.get(nid);
    if (!nodes) return [];
    return [...nodes]
      .filter(([n, a]) => n !== this.self && !a.leaving && this.alive(n))
      .map(([n]) => n)
      .sort();
  }

  private alive(name: string): boolean {
    const m = this.ml.get(name);
    return m?.state === 'alive' || m?.state === 'suspect';
  }

  private nodesOf(nid: string): Map<string, { lt: number; leaving: boolean }> {
    let m = this.nets.get(nid);
    if (!m) this.nets.set(nid, (m = new Map()));
    return m;
  }

  // ---------------------------------------------------------------- entries

  put(table: string, nid: string, key: string, value: unknown): void {
    this.write(table, nid, key, value, false);
  }

  remove(table: string, nid: string, key: string): void {
    const e = this.entries.get(key3(table, nid, key));
    if (!e || e.deleting || e.owner !== this.self) return;
    this.write(table, nid, key, e.value, true);
  }

  private write(table: string, nid: string, key: string, value: unknown, del: boolean): void {
    if (!this.inNetwork(nid)) throw new Error(`not attached to network ${nid}`);
    const lt = this.tick();
    const ev: WireEntry = { tb: table, k: key, v: value, o: this.self, lt, del };
    this.apply(nid, ev, false);
    this.queue(nid).push(key3(table, nid, key), ev);
  }

  /** Live entries of a table in a network (tombstones excluded). */
  list(table: string, nid: string): Entry[] {
    return [...(this.byTable.get(`${table}\u0000${nid}`)?.values() ?? [])].filter((e) => !e.deleting);
  }

  /** Everything, tombstones included, for diagnosis. */
  dump(nid?: string): Entry[] {
    return [...this.entries.values()].filter((e) => nid === undefined || e.nid === nid);
  }

  private queue(nid: string): BroadcastQueue<WireEntry> {
    let q = this.queues.get(nid);
    if (!q) this.queues.set(nid, (q = new BroadcastQueue()));
    return q;
  }

  /** Last writer wins by Lamport time; a dead owner's orphaned tombstone yields to the owner. */
  private apply(nid: string, ev: WireEntry, fromRemote: boolean, sender?: string): boolean {
    const k = key3(ev.tb, nid, ev.k);
    const cur = this.entries.get(k);
    // An orphaned tombstone yields at equal time only to the owner speaking for itself: a relayed
    // copy of the old entry must not bring a dead node's endpoint back.
    const ownerRevives = cur?.orphan === true && ev.o === cur.owner && sender === ev.o && !ev.del;
    if (cur && (cur.ltime > ev.lt || (cur.ltime === ev.lt && !ownerRevives))) return false;
    this.tick(ev.lt);
    const next: Entry = { table: ev.tb, nid, key: ev.k, value: ev.v, owner: ev.o, ltime: ev.lt, deleting: ev.del };
    if (ev.del) next.reapAt = this.clock.now() + this.cfg.reapMs;
    this.setEntry(k, next);
    if (fromRemote) this.stats.eventsApplied++;
    const type = ev.del ? 'delete' : cur && !cur.deleting ? 'update' : 'create';
    if (!(ev.del && (!cur || cur.deleting))) this.emit('event', { type, table: ev.tb, nid, key: ev.k, value: ev.v, owner: ev.o });
    return true;
  }

  // ---------------------------------------------------------------- gossip

  private gossip(): void {
    for (const [nid, q] of this.queues) {
      if (!q.size) continue;
      const peers = this.peers(nid);
      if (!peers.length) continue;
      const limit = retransmitLimit(this.cfg.retransmitMult, peers.length + 1);
      for (const p of shuffle(peers, this.rng).slice(0, this.cfg.fanout)) {
        const evs = q.take(MAX_EVENTS_PER_PACKET, limit);
        if (!evs.length) break;
        this.stats.eventsSent += evs.length;
        this.ml.sendUser(p, { k: 'tbl', nid, evs } satisfies UserMsg);
      }
    }
  }

  private onUser(from: string, m: UserMsg): void {
    if (!m || typeof m !== 'object') return;
    if (m.k === 'net') {
      const nodes = this.nodesOf(m.nid);
      const cur = nodes.get(m.node);
      if (cur && cur.lt >= m.lt) return;
      this.tick(m.lt);
      nodes.set(m.node, { lt: m.lt, leaving: m.leaving });
      // Relay: node-level events spread epidemically.
      this.ml.broadcastUser(`net:${m.node}:${m.nid}`, m);
      if (m.node === this.self) return;
      if (m.leaving) this.dropOwner(m.node, m.nid);
      else if (this.inNetwork(m.nid)) void this.bulkSync(m.nid, m.node);
      return;
    }
    if (m.k === 'tbl') {
      if (!this.inNetwork(m.nid) || !Array.isArray(m.evs)) return;
      for (const ev of m.evs) {
        this.stats.eventsReceived++;
        this.stats.receivedByNetwork[m.nid] = (this.stats.receivedByNetwork[m.nid] ?? 0) + 1;
        // Only nodes attached to the network may write to its tables.
        const owner = this.nets.get(m.nid)?.get(ev.o);
        if (!owner || owner.leaving) {
          this.stats.rejectedNotMember++;
          continue;
        }
        // Relayed events of a node we hold dead are late news: its entries are gone.
        if (ev.o !== this.self && !this.alive(ev.o)) continue;
        if (this.apply(m.nid, ev, true, from)) this.queue(m.nid).push(key3(ev.tb, m.nid, ev.k), ev);
      }
    }
  }

  // ---------------------------------------------------------------- bulk sync

  private wire(nid: string): WireEntry[] {
    return this.dump(nid).map((e) => ({ tb: e.table, k: e.key, v: e.value, o: e.owner, lt: e.ltime, del: e.deleting }));
  }

  private async bulkSync(nid: string, peer: string): Promise<void> {
    if (!this.inNetwork(nid)) return;
    try {
      this.stats.bulkSyncs++;
      const reply = (await this.ml.requestUser(peer, { k: 'bulk', nid, entries: this.wire(nid) } satisfies BulkRequest)) as BulkRequest | null;
      if (reply?.k === 'bulk') this.mergeEntries(nid, reply.entries, peer);
    } catch {
      // the next anti-entropy round retries
    }
  }

  private onBulk(from: string, req: BulkRequest): BulkRequest | null {
    if (!req || req.k !== 'bulk' || !this.inNetwork(req.nid)) return null;
    // The requester is attached if it asks; note it, as its broadcast may still be on its way.
    const nodes = this.nodesOf(req.nid);
    if (!nodes.has(from)) nodes.set(from, { lt: 0, leaving: false });
    this.mergeEntries(req.nid, req.entries, from);
    return { k: 'bulk', nid: req.nid, entries: this.wire(req.nid) };
  }

  private mergeEntries(nid: string, list: WireEntry[], sender: string): void {
    if (!Array.isArray(list)) return;
    for (const ev of list) {
      const owner = this.nets.get(nid)?.get(ev.o);
      if (ev.o !== this.self && (!owner || owner.leaving || !this.alive(ev.o))) continue;
      this.apply(nid, ev, true, sender);
    }
  }

  private antiEntropy(): void {
    for (const nid of this.nets.keys()) {
      const peers = this.peers(nid);
      if (!this.inNetwork(nid) || !peers.length) continue;
      void this.bulkSync(nid, peers[Math.floor(this.rng() * peers.length)]!);
    }
  }

  // ---------------------------------------------------------------- membership changes

  private localState(): unknown {
    const nets: Record<string, Record<string, { lt: number; leaving: boolean }>> = {};
    for (const [nid, nodes] of this.nets) nets[nid] = Object.fromEntries(nodes);
    return { nets };
  }

  private mergeState(_from: string, s: unknown): void {
    const nets = (s as { nets?: Record<string, Record<string, { lt: number; leaving: boolean }>> })?.nets;
    if (!nets || typeof nets !== 'object') return;
    for (const [nid, nodes] of Object.entries(nets)) {
      for (const [node, a] of Object.entries(nodes)) {
        if (node === this.self) continue;
        this.onUser('', { k: 'net', node, nid, lt: a.lt, leaving: a.leaving });
      }
    }
  }

  /** A dead node's entries disappear at once (as tombstones), everywhere, without relaying. */
  private nodeGone(name: string): void {
    for (const nid of this.nets.keys()) this.dropOwner(name, nid);
  }

  private dropOwner(name: string, nid: string): void {
    for (const e of this.entries.values()) {
      if (e.owner !== name || e.nid !== nid || e.deleting) continue;
      e.deleting = true;
      e.orphan = true;
      e.reapAt = this.clock.now() + this.cfg.reapMs;
      this.emit('event', { type: 'delete', table: e.table, nid, key: e.key, value: e.value, owner: name });
    }
  }

  /** A node back from the dead (or a restart): resync the networks we share. */
  private nodeBack(name: string): void {
    for (const [nid, nodes] of this.nets) if (nodes.get(name) && !nodes.get(name)!.leaving && this.inNetwork(nid)) void this.bulkSync(nid, name);
  }

  private reap(): void {
    const now = this.clock.now();
    for (const [k, e] of [...this.entries]) if (e.deleting && e.reapAt !== undefined && e.reapAt <= now) this.deleteEntry(k, e);
  }
}
