// The manager's view of the cluster: every object is one etcd key under /vxswarm/, and this is
// an in-memory cache of them fed only by an etcd watch, so nothing is visible here before etcd
// has committed it. `Version.Index` is the key's mod_revision.
//
// A write is a transaction function run against the cache (plus its own writes); the keys it
// read become compares (a key's mod_revision, or for a listing, no key of the collection newer
// than the cache and no insert or delete since), its writes become one etcd txn. A compare that
// fails means someone else wrote first: the function runs again on the newer cache. Functions
// queued while a txn is in flight commit together in the next one (group commit), each still
// all-or-nothing against the others' failures in its own body.
import { EventEmitter } from 'node:events';
import { VxError, errorMessage } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import { NotSentError, OutcomeUnknownError, prefixEnd, type Compare, type Kv, type Op, type Watch, type WatchEvent } from '../etcd/kv.js';
import type { AttachmentRecord, ClusterRecord, ConfigRecord, NetworkRecord, NodeRecord, ServiceRecord, SessionRecord, TaskRecord } from './types.js';

export const COLLECTIONS = ['cluster', 'nodes', 'networks', 'vnis', 'ips', 'cursors', 'attachments', 'services', 'tasks', 'sessions', 'configs'] as const;
export type Collection = (typeof COLLECTIONS)[number];
/** collections whose records carry `version` (the key's mod_revision) */
const VERSIONED = new Set<Collection>(['cluster', 'nodes', 'networks', 'services', 'tasks', 'configs']);
export const KEY_PREFIX = '/vxswarm/';
/** written with every insert into or delete from a collection: a listing compares it */
const GEN_PREFIX = `${KEY_PREFIX}gen/`;
/** fields the cache indexes (their listings decode only the records that match) */
const INDEXED: Partial<Record<Collection, string[]>> = { tasks: ['serviceId', 'nodeId'], attachments: ['networkId', 'nodeId'] };
/** attempts of one transaction function against writes from other managers */
const MAX_ATTEMPTS = 8;
/** how many queued functions share one etcd txn */
const MAX_BATCH = 64;
/** a committed write waits this long for the watch to show it here (read-your-writes) */
const CATCH_UP_MS = 3000;
/**
 * A write is answered within this, committed or not: queued behind others that wait on an etcd
 * without quorum, it fails ("not made") rather than wait its turn for ever.
 */
export const TX_DEADLINE_MS = 4500;
/**
 * One send of a txn waits this long before it is sent again. A member whose etcd leader just
 * vanished forwards a proposal into the void and would hold it until its own request timeout
 * (7 s); sent again, it reaches the new leader (elected in 1-2 s) and commits.
 */
const SEND_MS = 1500;
/** a manager's own key, put by each of its txns (resending one is safe: see send()) */
const WRITER_PREFIX = `${KEY_PREFIX}writers/`;

interface Cached {
  value: string;
  mod: number;
  create: number;
}

interface Written {
  value: string | undefined;
  /** the caller's object, whose version is set once the write commits */
  obj?: { version: number };
  coll: Collection;
}

interface Scope {
  reads: Map<string, number>;
  lists: Set<Collection>;
  writes: Map<string, Written>;
  after: (() => void)[];
}

interface Queued {
  fn: () => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  attempts: number;
  deadline: number;
}

const newScope = (): Scope => ({ reads: new Map(), lists: new Set(), writes: new Map(), after: [] });

export const collKey = (coll: Collection, id: string): string => `${KEY_PREFIX}${coll}/${id}`;
const collPrefix = (coll: Collection): string => `${KEY_PREFIX}${coll}/`;

function splitKey(key: string): { coll: Collection; id: string } | undefined {
  if (!key.startsWith(KEY_PREFIX)) return undefined;
  const rest = key.slice(KEY_PREFIX.length);
  const i = rest.indexOf('/');
  const coll = rest.slice(0, i) as Collection;
  return i > 0 && COLLECTIONS.includes(coll) ? { coll, id: rest.slice(i + 1) } : undefined;
}

export interface StoreChange {
  coll: Collection;
  id: string;
  deleted: boolean;
}

export class Store extends EventEmitter {
  private readonly data = new Map<Collection, Map<string, Cached>>(COLLECTIONS.map((c) => [c, new Map()]));
  /** other keys under the prefix (generations, the leader key) */
  private readonly other = new Map<string, Cached>();
  /** the etcd revision this cache shows */
  rev = 0;
  private watch: Watch | undefined;
  private closed = false;
  private scope: Scope | undefined;
  private batch: Scope | undefined;
  private readonly queue: Queued[] = [];
  private committing = false;
  private readonly revWaiters = new Set<{ rev: number; done: () => void }>();
  /** set while this manager leads: every write also requires its election key to be unchanged */
  fence: Compare | undefined;

  private readonly writerKey: string;
  private txnSeq = 0;

  private constructor(
    readonly kv: Kv,
    writer: string,
  ) {
    super();
    this.setMaxListeners(0);
    this.writerKey = WRITER_PREFIX + writer;
  }

  /** Loads every key and follows the watch from there. `writer`: this manager's node ID. */
  static async open(kv: Kv, writer = newId()): Promise<Store> {
    const s = new Store(kv, writer);
    await s.load();
    return s;
  }

  private async load(): Promise<void> {
    const { rev, kvs } = await this.kv.range(KEY_PREFIX);
    for (const m of this.data.values()) m.clear();
    this.other.clear();
    this.index.clear();
    for (const e of kvs) this.set(e.key, { value: e.value, mod: e.mod, create: e.create });
    this.rev = rev;
    this.follow();
    this.emit('reset');
    this.wakeWaiters();
  }

  private follow(): void {
    if (this.closed) return;
    this.watch = this.kv.watch(KEY_PREFIX, this.rev + 1, {
      events: (events) => this.apply(events),
      ended: (why, compacted) => {
        this.watch = undefined;
        if (this.closed) return;
        this.emit('watch-lost', why);
        // Compacted history cannot be replayed: read everything again.
        setTimeout(() => (compacted ? this.load().catch(() => this.retryLoad()) : this.follow()), 200).unref();
      },
    });
  }

  private retryLoad(): void {
    if (!this.closed) setTimeout(() => void this.load().catch(() => this.retryLoad()), 500).unref();
  }

  private set(key: string, c: Cached | undefined): StoreChange | undefined {
    const k = splitKey(key);
    const m = k ? this.data.get(k.coll)! : this.other;
    const id = k ? k.id : key;
    if (k && INDEXED[k.coll]) this.reindex(k.coll, id, m.get(id), c);
    if (c) m.set(id, c);
    else m.delete(id);
    return k ? { coll: k.coll, id: k.id, deleted: !c } : undefined;
  }

  /** field=value → ids, for the collections listed by a field (a service's tasks, a node's). */
  private readonly index = new Map<string, Set<string>>();

  private reindex(coll: Collection, id: string, old: Cached | undefined, next: Cached | undefined): void {
    const parse = (c: Cached | undefined): Record<string, unknown> | undefined => (c ? (JSON.parse(c.value) as Record<string, unknown>) : undefined);
    const [before, after] = [parse(old), parse(next)];
    for (const f of INDEXED[coll]!) {
      const [was, now] = [before && String(before[f]), after && String(after[f])];
      if (was === now) continue;
      if (was !== undefined) this.index.get(`${coll}:${f}:${was}`)?.delete(id);
      if (now !== undefined) {
        const k = `${coll}:${f}:${now}`;
        if (!this.index.has(k)) this.index.set(k, new Set());
        this.index.get(k)!.add(id);
      }
    }
  }

  /**
   * One watch response. Its header revision is etcd's current one, which a watch still catching
   * up passes before it has sent the events in between: only the events say how far we are.
   */
  private apply(events: WatchEvent[]): void {
    const changes: StoreChange[] = [];
    // One transaction's events share its revision: skip only what an earlier response brought.
    const seen = this.rev;
    for (const e of events) {
      if (e.mod <= seen) continue;
      const ch = this.set(e.key, e.type === 'put' ? { value: e.value, mod: e.mod, create: e.create } : undefined);
      if (ch) changes.push(ch);
      this.rev = e.mod;
    }
    if (changes.length) this.emit('change', changes);
    this.wakeWaiters();
  }

  /** Our committed transaction, all of it at revision `rev`, the one after the cache's. */
  private applyOwn(ops: Op[], rev: number): void {
    const events: WatchEvent[] = ops.map((op) => {
      if ('del' in op) return { type: 'delete', key: op.del, value: '', mod: rev, create: 0 };
      const k = splitKey(op.put);
      const old = k ? this.data.get(k.coll)!.get(k.id) : this.other.get(op.put);
      return { type: 'put', key: op.put, value: op.value, mod: rev, create: old?.create ?? rev };
    });
    this.apply(events);
  }

  private wakeWaiters(): void {
    for (const w of this.revWaiters) if (this.rev >= w.rev) w.done();
  }

  /** Resolves true once the cache shows revision `rev`, false after `ms`. */
  caughtUp(rev: number, ms = CATCH_UP_MS): Promise<boolean> {
    if (this.rev >= rev) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w = {
        rev,
        done: () => {
          clearTimeout(t);
          this.revWaiters.delete(w);
          resolve(true);
        },
      };
      const t = setTimeout(() => {
        this.revWaiters.delete(w);
        resolve(false);
      }, ms);
      this.revWaiters.add(w);
    });
  }

  close(): void {
    this.closed = true;
    this.watch?.close();
    this.watch = undefined;
    for (const q of this.queue.splice(0)) q.reject(new VxError('the manager store is closed', 503));
    for (const w of this.revWaiters) w.done();
  }

  /** A key outside the collections (the leader key), as cached. */
  raw(key: string): Cached | undefined {
    return this.other.get(key);
  }

  // ---- transactions ----

  /**
   * Runs `fn` as one transaction against etcd and resolves with its result once committed and
   * shown here. A throw in `fn` rolls its writes back. Nested calls join the outer one.
   */
  tx<T>(fn: () => T): Promise<T> {
    if (this.scope) return Promise.resolve(fn());
    if (this.closed) return Promise.reject(new VxError('the manager store is closed', 503));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject, attempts: 0, deadline: Date.now() + TX_DEADLINE_MS });
      if (!this.committing) void this.commitLoop();
    });
  }

  /** Runs `cb` once the current transaction commits (never if it fails). */
  afterCommit(cb: () => void): void {
    if (this.scope) this.scope.after.push(cb);
    else cb();
  }

  private async commitLoop(): Promise<void> {
    this.committing = true;
    try {
      while (this.queue.length && !this.closed) await this.commitBatch(this.queue.splice(0, MAX_BATCH));
    } finally {
      this.committing = false;
    }
  }

  private async commitBatch(all: Queued[]): Promise<void> {
    const t = Date.now();
    const items = all.filter((q) => {
      if (q.deadline > t + 200) return true;
      q.reject(
        new VxError(`the cluster store did not take the write within ${TX_DEADLINE_MS} ms (busy, or the managers lost their quorum): it was not made`, 503),
      );
      return false;
    });
    const batch = newScope();
    const ran: { q: Queued; result: unknown; scope: Scope }[] = [];
    const listedAt = this.rev;
    this.batch = batch;
    try {
      for (const q of items) {
        const scope = newScope();
        this.scope = scope;
        try {
          const result = q.fn();
          for (const [k, v] of scope.reads) if (!batch.writes.has(k) && !batch.reads.has(k)) batch.reads.set(k, v);
          for (const c of scope.lists) batch.lists.add(c);
          for (const [k, w] of scope.writes) batch.writes.set(k, w);
          ran.push({ q, result, scope });
        } catch (e) {
          q.reject(e);
        } finally {
          this.scope = undefined;
        }
      }
    } finally {
      this.batch = undefined;
    }
    if (!ran.length) return;
    if (!batch.writes.size) {
      for (const r of ran) this.finish(r.q, r.result, r.scope);
      return;
    }
    const { compares, ops, nonce } = this.plan(batch, listedAt);
    let res: { ok: boolean; rev: number };
    try {
      res = await this.send(compares, ops, nonce, Math.min(...ran.map((r) => r.q.deadline)));
    } catch (e) {
      const err = e instanceof VxError ? e : new VxError(`the cluster store is unavailable: ${errorMessage(e)}`, 503);
      for (const r of ran) r.q.reject(err);
      return;
    }
    if (!res.ok) {
      // Someone else wrote first (or the fence moved): look again at the newer state.
      await this.caughtUp(res.rev, 1000);
      for (const r of ran) {
        if (this.fence && !this.fenceHolds()) r.q.reject(new VxError('this manager is no longer the leader: the write was not made', 503));
        else if (++r.q.attempts >= MAX_ATTEMPTS) r.q.reject(new VxError(`the write conflicted with others ${MAX_ATTEMPTS} times: try again`, 503));
        else this.queue.unshift(r.q);
      }
      return;
    }
    // Nothing else happened between what the cache shows and our commit: the cache can take our
    // own writes now, exactly as the watch will bring them (which it then skips). Otherwise the
    // watch brings the writes in between first.
    if (this.rev === res.rev - 1) this.applyOwn(ops, res.rev);
    else await this.caughtUp(res.rev);
    for (const w of batch.writes.values()) if (w.obj && VERSIONED.has(w.coll)) w.obj.version = res.rev;
    for (const r of ran) this.finish(r.q, r.result, r.scope);
  }

  /**
   * Sends one txn until it is answered or the deadline passes. Every txn compares this manager's
   * writer key and puts a new value (`nonce`) there, so of all the sends of one txn at most one can
   * commit, and a later send that fails its compares tells from that key whether an earlier one did.
   * A send that timed out, broke, or found etcd without a leader is therefore simply sent again.
   */
  /** told how long each committed txn took etcd (seconds), for metrics */
  onCommit: ((seconds: number) => void) | undefined;

  private async send(compares: Compare[], ops: Op[], nonce: string, deadline: number): Promise<{ ok: boolean; rev: number }> {
    let unsure: VxError | undefined;
    for (;;) {
      const left = deadline - Date.now();
      if (left < 100 && unsure) throw unsure;
      try {
        const t0 = performance.now();
        const r = await this.kv.txn(compares, ops, Math.max(100, Math.min(left, SEND_MS)));
        if (r.ok) this.onCommit?.((performance.now() - t0) / 1000);
        if (r.ok || !unsure) return r;
        // Without the cache at etcd's revision the writer key cannot tell: still unsure.
        if (!(await this.caughtUp(r.rev, Math.max(100, deadline - Date.now())))) throw unsure;
        const w = this.other.get(this.writerKey);
        return w?.value === nonce ? { ok: true, rev: w.mod } : r;
      } catch (e) {
        // etcd's own refusals (a bad request) are final.
        if (!(e instanceof VxError) || e.status < 500) throw e;
        // Not sent at all (etcd down): nothing committed. Anything else may have.
        if (!(e instanceof NotSentError)) unsure ??= e instanceof OutcomeUnknownError ? e : new OutcomeUnknownError(`${e.message}: the outcome is unknown`);
        if (deadline - Date.now() < 150) throw unsure ?? e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private fenceHolds(): boolean {
    const f = this.fence!;
    const c = this.other.get(f.key);
    return !!c && (f.target === 'CREATE' ? c.create : c.mod) === f.rev;
  }

  private finish(q: Queued, result: unknown, scope: Scope): void {
    for (const cb of scope.after) {
      try {
        cb();
      } catch {
        // a listener's failure is not the write's
      }
    }
    q.resolve(result);
  }

  private plan(batch: Scope, listedAt: number): { compares: Compare[]; ops: Op[]; nonce: string } {
    const compares: Compare[] = [];
    for (const [key, mod] of batch.reads) compares.push({ key, target: 'MOD', result: 'EQUAL', rev: mod });
    for (const c of batch.lists) {
      compares.push({ key: collPrefix(c), rangeEnd: prefixEnd(collPrefix(c)), target: 'MOD', result: 'LESS', rev: listedAt + 1 });
      compares.push({ key: GEN_PREFIX + c, target: 'MOD', result: 'EQUAL', rev: this.other.get(GEN_PREFIX + c)?.mod ?? 0 });
    }
    if (this.fence) compares.push(this.fence);
    const ops: Op[] = [];
    const gens = new Set<Collection>();
    for (const [key, w] of batch.writes) {
      const existed = this.data.get(w.coll)!.has(splitKey(key)!.id);
      if (w.value === undefined) {
        if (!existed) continue;
        ops.push({ del: key });
        gens.add(w.coll);
      } else {
        ops.push({ put: key, value: w.value });
        if (!existed) gens.add(w.coll);
      }
    }
    for (const c of gens) ops.push({ put: GEN_PREFIX + c, value: '' });
    const nonce = `${Date.now()}-${++this.txnSeq}`;
    compares.push({ key: this.writerKey, target: 'MOD', result: 'EQUAL', rev: this.other.get(this.writerKey)?.mod ?? 0 });
    ops.push({ put: this.writerKey, value: nonce });
    return { compares, ops, nonce };
  }

  // ---- reads and writes of the view ----

  private decode<T>(coll: Collection, value: string, mod: number): T {
    const o = JSON.parse(value) as T;
    if (VERSIONED.has(coll)) (o as { version: number }).version = mod;
    return o;
  }

  /**
   * A key as the running transaction sees it: its own (or its batch's) write, else the cache,
   * recording the read. `mod` is set for a cached value only (a written one has no version yet).
   */
  private lookup(coll: Collection, id: string): { value: string | undefined; mod?: number } {
    const key = collKey(coll, id);
    const mine = this.scope?.writes.get(key) ?? this.batch?.writes.get(key);
    if (mine) return { value: mine.value };
    const c = this.data.get(coll)!.get(id);
    if (this.scope && !this.scope.reads.has(key)) this.scope.reads.set(key, c?.mod ?? 0);
    return c ? { value: c.value, mod: c.mod } : { value: undefined };
  }

  private read(coll: Collection, id: string): string | undefined {
    return this.lookup(coll, id).value;
  }

  private one<T>(coll: Collection, id: string): T | undefined {
    const { value, mod } = this.lookup(coll, id);
    if (value === undefined) return undefined;
    return mod === undefined ? (JSON.parse(value) as T) : this.decode<T>(coll, value, mod);
  }

  /** Every record of `coll` (or those of `only`, an index's ids) as the running transaction sees them. */
  private all<T>(coll: Collection, only?: Set<string>): T[] {
    this.scope?.lists.add(coll);
    const out = new Map<string, T>();
    const cached = this.data.get(coll)!;
    if (only) {
      for (const id of only) {
        const c = cached.get(id);
        if (c) out.set(id, this.decode<T>(coll, c.value, c.mod));
      }
    } else for (const [id, c] of cached) out.set(id, this.decode<T>(coll, c.value, c.mod));
    for (const s of [this.batch, this.scope]) {
      if (!s) continue;
      for (const [key, w] of s.writes) {
        if (w.coll !== coll) continue;
        const id = splitKey(key)!.id;
        if (w.value === undefined) out.delete(id);
        else out.set(id, JSON.parse(w.value) as T);
      }
    }
    return [...out.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);
  }

  private write(coll: Collection, id: string, obj: object | undefined): void {
    if (!this.scope) throw new Error(`store write outside a transaction (${coll}/${id})`);
    const w: Written = { coll, value: obj === undefined ? undefined : JSON.stringify(obj) };
    if (obj && 'version' in obj) w.obj = obj as { version: number };
    this.scope.writes.set(collKey(coll, id), w);
  }

  /** The version a record written now will have: known once it commits (its mod_revision). */
  bump(): number {
    return 0;
  }

  // cluster
  getCluster(): ClusterRecord | undefined {
    return this.one<ClusterRecord>('cluster', 'cluster');
  }
  putCluster(c: ClusterRecord): void {
    this.write('cluster', 'cluster', c);
  }

  // nodes
  getNode(id: string): NodeRecord | undefined {
    return this.one<NodeRecord>('nodes', id);
  }
  listNodes(): NodeRecord[] {
    return this.all<NodeRecord>('nodes');
  }
  putNode(n: NodeRecord): void {
    this.write('nodes', n.id, n);
  }
  deleteNode(id: string): void {
    this.write('nodes', id, undefined);
  }

  // sessions: written by the dispatcher that holds one, on its lease, never in a transaction
  getSession(nodeId: string): SessionRecord | undefined {
    const c = this.data.get('sessions')!.get(nodeId);
    return c ? (JSON.parse(c.value) as SessionRecord) : undefined;
  }
  listSessions(): SessionRecord[] {
    return [...this.data.get('sessions')!.values()].map((c) => JSON.parse(c.value) as SessionRecord);
  }

  // configs
  getConfig(id: string): ConfigRecord | undefined {
    return this.one<ConfigRecord>('configs', id);
  }
  listConfigs(): ConfigRecord[] {
    return this.all<ConfigRecord>('configs').sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
  putConfig(c: ConfigRecord): void {
    this.write('configs', c.id, c);
  }
  deleteConfig(id: string): void {
    this.write('configs', id, undefined);
  }

  // networks
  getNetwork(id: string): NetworkRecord | undefined {
    return this.one<NetworkRecord>('networks', id);
  }
  getNetworkByName(name: string): NetworkRecord | undefined {
    return this.listNetworks().find((n) => n.name === name);
  }
  listNetworks(): NetworkRecord[] {
    return this.all<NetworkRecord>('networks').sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
  putNetwork(n: NetworkRecord): void {
    this.write('networks', n.id, n);
  }
  /** The network with its VNIs, addresses and allocation cursors. */
  deleteNetwork(id: string): void {
    this.write('networks', id, undefined);
    for (const v of this.all<{ networkId: string; vni: number }>('vnis')) if (v.networkId === id) this.write('vnis', String(v.vni), undefined);
    for (const coll of ['ips', 'cursors'] as const) for (const sub of this.idsUnder(coll, `${id}/`)) this.write(coll, sub, undefined);
  }

  private idsUnder(coll: Collection, start: string): string[] {
    this.scope?.lists.add(coll);
    const ids = new Set([...this.data.get(coll)!.keys()].filter((k) => k.startsWith(start)));
    for (const s of [this.batch, this.scope])
      for (const [key, w] of s?.writes ?? []) {
        const id = splitKey(key)!.id;
        if (w.coll !== coll || !id.startsWith(start)) continue;
        if (w.value === undefined) ids.delete(id);
        else ids.add(id);
      }
    return [...ids];
  }

  // VNIs
  usedVnis(): Set<number> {
    return new Set(this.all<{ vni: number }>('vnis').map((v) => v.vni));
  }
  takeVni(vni: number, networkId: string): void {
    this.write('vnis', String(vni), { vni, networkId });
  }

  // IPs (as unsigned 32-bit integers)
  ipTaken(networkId: string, ip: number): boolean {
    return this.read('ips', `${networkId}/${ip}`) !== undefined;
  }
  takeIp(networkId: string, ip: number, owner: string): void {
    this.write('ips', `${networkId}/${ip}`, { owner });
  }
  releaseIp(networkId: string, ip: number): void {
    this.write('ips', `${networkId}/${ip}`, undefined);
  }
  countIps(networkId: string): number {
    return this.idsUnder('ips', `${networkId}/`).length;
  }
  getCursor(networkId: string, subnet: string): number | undefined {
    const v = this.read('cursors', `${networkId}/${subnet}`);
    return v === undefined ? undefined : (JSON.parse(v) as { last: number }).last;
  }
  setCursor(networkId: string, subnet: string, last: number): void {
    this.write('cursors', `${networkId}/${subnet}`, { last });
  }

  // attachments
  getAttachment(id: string): AttachmentRecord | undefined {
    return this.one<AttachmentRecord>('attachments', id);
  }
  /** Records whose `field` is `value` by the index (the caller filters again: this transaction's own writes may differ). */
  private where<T>(coll: Collection, filter: Record<string, string | undefined>): T[] {
    const [f, v] = Object.entries(filter).find(([k, x]) => x !== undefined && INDEXED[coll]?.includes(k)) ?? [];
    return this.all<T>(coll, f === undefined ? undefined : (this.index.get(`${coll}:${f}:${v}`) ?? new Set()));
  }

  listAttachments(filter: { networkId?: string; nodeId?: string } = {}): AttachmentRecord[] {
    return this.where<AttachmentRecord>('attachments', filter).filter(
      (a) => (filter.networkId === undefined || a.networkId === filter.networkId) && (filter.nodeId === undefined || a.nodeId === filter.nodeId),
    );
  }
  putAttachment(a: AttachmentRecord): void {
    this.write('attachments', a.id, a);
  }
  deleteAttachment(id: string): void {
    this.write('attachments', id, undefined);
  }

  // services
  getService(id: string): ServiceRecord | undefined {
    return this.one<ServiceRecord>('services', id);
  }
  listServices(): ServiceRecord[] {
    return this.all<ServiceRecord>('services').sort((a, b) => (a.spec.name < b.spec.name ? -1 : a.spec.name > b.spec.name ? 1 : 0));
  }
  putService(s: ServiceRecord): void {
    this.write('services', s.id, s);
  }
  deleteService(id: string): void {
    this.write('services', id, undefined);
  }

  // tasks
  getTask(id: string): TaskRecord | undefined {
    return this.one<TaskRecord>('tasks', id);
  }
  listTasks(filter: { serviceId?: string; nodeId?: string } = {}): TaskRecord[] {
    return this.where<TaskRecord>('tasks', filter).filter(
      (t) => (filter.serviceId === undefined || t.serviceId === filter.serviceId) && (filter.nodeId === undefined || t.nodeId === filter.nodeId),
    );
  }
  putTask(t: TaskRecord): void {
    this.write('tasks', t.id, t);
  }
  deleteTask(id: string): void {
    this.write('tasks', id, undefined);
  }
}
