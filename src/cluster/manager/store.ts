// The manager's state in SQLite. Every write is one transaction; a version counter gives
// each written object its Version.Index, as raft indexes do in swarmkit. Each write is also
// recorded as an operation, so a transaction's write set can go into the raft log and be
// replayed, unchanged, on the other managers.
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import type { AttachmentRecord, ClusterRecord, NetworkRecord, NodeRecord, ServiceRecord, TaskRecord } from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vnis (vni INTEGER PRIMARY KEY, network_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ips (network_id TEXT NOT NULL, ip INTEGER NOT NULL, owner TEXT NOT NULL, PRIMARY KEY (network_id, ip));
CREATE TABLE IF NOT EXISTS cursors (network_id TEXT NOT NULL, subnet TEXT NOT NULL, last INTEGER NOT NULL, PRIMARY KEY (network_id, subnet));
CREATE TABLE IF NOT EXISTS attachments (id TEXT PRIMARY KEY, network_id TEXT NOT NULL, node_id TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS attachments_by_network ON attachments (network_id);
CREATE INDEX IF NOT EXISTS attachments_by_node ON attachments (node_id);
CREATE TABLE IF NOT EXISTS services (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, service_id TEXT NOT NULL, node_id TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_by_service ON tasks (service_id);
CREATE INDEX IF NOT EXISTS tasks_by_node ON tasks (node_id);
CREATE TABLE IF NOT EXISTS raft_log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, data TEXT);
CREATE TABLE IF NOT EXISTS raft_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

/** The replicated tables (raft_log and raft_state are each manager's own). */
export const STATE_TABLES = ['meta', 'nodes', 'networks', 'vnis', 'ips', 'cursors', 'attachments', 'services', 'tasks'] as const;

type Db = Database.Database;

/** Every way the state changes. A recorded op is [name, ...args], replayed with the same function. */
const WRITES = {
  setMeta: (db: Db, key: string, value: string) =>
    db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value),
  putNode: (db: Db, n: NodeRecord) =>
    db.prepare('INSERT INTO nodes (id, data) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET data = excluded.data').run(n.id, JSON.stringify(n)),
  deleteNode: (db: Db, id: string) => db.prepare('DELETE FROM nodes WHERE id = ?').run(id),
  putNetwork: (db: Db, n: NetworkRecord) =>
    db
      .prepare('INSERT INTO networks (id, name, data) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET name = excluded.name, data = excluded.data')
      .run(n.id, n.name, JSON.stringify(n)),
  deleteNetwork: (db: Db, id: string) => {
    for (const t of ['networks WHERE id', 'vnis WHERE network_id', 'ips WHERE network_id', 'cursors WHERE network_id'])
      db.prepare(`DELETE FROM ${t} = ?`).run(id);
  },
  takeVni: (db: Db, vni: number, networkId: string) => db.prepare('INSERT INTO vnis (vni, network_id) VALUES (?, ?)').run(vni, networkId),
  takeIp: (db: Db, networkId: string, ip: number, owner: string) =>
    db.prepare('INSERT INTO ips (network_id, ip, owner) VALUES (?, ?, ?)').run(networkId, ip, owner),
  releaseIp: (db: Db, networkId: string, ip: number) => db.prepare('DELETE FROM ips WHERE network_id = ? AND ip = ?').run(networkId, ip),
  setCursor: (db: Db, networkId: string, subnet: string, last: number) =>
    db
      .prepare('INSERT INTO cursors (network_id, subnet, last) VALUES (?, ?, ?) ON CONFLICT(network_id, subnet) DO UPDATE SET last = excluded.last')
      .run(networkId, subnet, last),
  putAttachment: (db: Db, a: AttachmentRecord) =>
    db
      .prepare('INSERT INTO attachments (id, network_id, node_id, data) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET data = excluded.data')
      .run(a.id, a.networkId, a.nodeId, JSON.stringify(a)),
  deleteAttachment: (db: Db, id: string) => db.prepare('DELETE FROM attachments WHERE id = ?').run(id),
  putService: (db: Db, s: ServiceRecord) =>
    db
      .prepare('INSERT INTO services (id, name, data) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET name = excluded.name, data = excluded.data')
      .run(s.id, s.spec.name, JSON.stringify(s)),
  deleteService: (db: Db, id: string) => db.prepare('DELETE FROM services WHERE id = ?').run(id),
  putTask: (db: Db, t: TaskRecord) =>
    db
      .prepare(
        'INSERT INTO tasks (id, service_id, node_id, data) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET node_id = excluded.node_id, data = excluded.data',
      )
      .run(t.id, t.serviceId, t.nodeId, JSON.stringify(t)),
  deleteTask: (db: Db, id: string) => db.prepare('DELETE FROM tasks WHERE id = ?').run(id),
};

export type WriteOp = { [K in keyof typeof WRITES]: [K, ...(Parameters<(typeof WRITES)[K]> extends [Db, ...infer A] ? A : never)] }[keyof typeof WRITES];

/**
 * Sees every transaction's write set before it commits (and may refuse it, rolling it back:
 * a manager that is not the raft leader must not write), then hears that it committed.
 */
export interface Journal {
  record(ops: WriteOp[]): void;
  committed(): void;
}

export class Store {
  /** raft's log and the snapshot code work on the same database, in the same transactions */
  readonly db: Db;
  private ops: WriteOp[] | undefined;
  journal: Journal | undefined;

  constructor(file: string) {
    if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
  }

  close(): void {
    this.db.close();
  }

  /** One JSON record (the `data` column) or undefined. */
  private one<T>(sql: string, ...args: unknown[]): T | undefined {
    const r = this.db.prepare(sql).get(...args) as { data: string } | undefined;
    return r ? (JSON.parse(r.data) as T) : undefined;
  }
  private all<T>(sql: string, ...args: unknown[]): T[] {
    return (this.db.prepare(sql).all(...args) as { data: string }[]).map((r) => JSON.parse(r.data) as T);
  }

  /** Runs `fn` as one transaction; a throw rolls every write back. Nested calls join the outer one. */
  tx<T>(fn: () => T): T {
    if (this.ops) return fn();
    this.ops = [];
    let wrote = false;
    try {
      const r = this.db.transaction(() => {
        const out = fn();
        const ops = this.ops!;
        if (ops.length) {
          this.journal?.record(ops);
          wrote = true;
        }
        return out;
      })();
      if (wrote) this.journal?.committed();
      return r;
    } finally {
      this.ops = undefined;
    }
  }

  private write(...op: WriteOp): void {
    if (!this.ops) return this.tx(() => this.write(...op));
    this.ops.push(structuredClone(op));
    (WRITES[op[0]] as (db: Db, ...a: unknown[]) => unknown)(this.db, ...op.slice(1));
  }

  /** Replays another manager's write set (call inside a transaction). */
  replay(ops: WriteOp[]): void {
    for (const op of ops) (WRITES[op[0]] as (db: Db, ...a: unknown[]) => unknown)(this.db, ...op.slice(1));
  }

  /** Next version index; call inside a transaction. */
  bump(): number {
    const v = Number(this.getMeta('version') ?? '0') + 1;
    this.setMeta('version', String(v));
    return v;
  }

  getMeta(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }
  setMeta(key: string, value: string): void {
    this.write('setMeta', key, value);
  }

  // cluster
  getCluster(): ClusterRecord | undefined {
    const v = this.getMeta('cluster');
    return v ? (JSON.parse(v) as ClusterRecord) : undefined;
  }
  putCluster(c: ClusterRecord): void {
    this.setMeta('cluster', JSON.stringify(c));
  }

  // nodes
  getNode(id: string): NodeRecord | undefined {
    return this.one<NodeRecord>('SELECT data FROM nodes WHERE id = ?', id);
  }
  listNodes(): NodeRecord[] {
    return this.all<NodeRecord>('SELECT data FROM nodes ORDER BY id');
  }
  putNode(n: NodeRecord): void {
    this.write('putNode', n);
  }
  deleteNode(id: string): void {
    this.write('deleteNode', id);
  }

  // networks
  getNetwork(id: string): NetworkRecord | undefined {
    return this.one<NetworkRecord>('SELECT data FROM networks WHERE id = ?', id);
  }
  getNetworkByName(name: string): NetworkRecord | undefined {
    return this.one<NetworkRecord>('SELECT data FROM networks WHERE name = ?', name);
  }
  listNetworks(): NetworkRecord[] {
    return this.all<NetworkRecord>('SELECT data FROM networks ORDER BY name');
  }
  putNetwork(n: NetworkRecord): void {
    this.write('putNetwork', n);
  }
  deleteNetwork(id: string): void {
    this.write('deleteNetwork', id);
  }

  // VNIs
  usedVnis(): Set<number> {
    return new Set((this.db.prepare('SELECT vni FROM vnis').all() as { vni: number }[]).map((r) => r.vni));
  }
  takeVni(vni: number, networkId: string): void {
    this.write('takeVni', vni, networkId);
  }

  // IPs (as unsigned 32-bit integers)
  ipTaken(networkId: string, ip: number): boolean {
    return this.db.prepare('SELECT 1 FROM ips WHERE network_id = ? AND ip = ?').get(networkId, ip) !== undefined;
  }
  takeIp(networkId: string, ip: number, owner: string): void {
    this.write('takeIp', networkId, ip, owner);
  }
  releaseIp(networkId: string, ip: number): void {
    this.write('releaseIp', networkId, ip);
  }
  countIps(networkId: string): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM ips WHERE network_id = ?').get(networkId) as { n: number }).n;
  }
  getCursor(networkId: string, subnet: string): number | undefined {
    return (this.db.prepare('SELECT last FROM cursors WHERE network_id = ? AND subnet = ?').get(networkId, subnet) as { last: number } | undefined)?.last;
  }
  setCursor(networkId: string, subnet: string, last: number): void {
    this.write('setCursor', networkId, subnet, last);
  }

  // attachments
  getAttachment(id: string): AttachmentRecord | undefined {
    return this.one<AttachmentRecord>('SELECT data FROM attachments WHERE id = ?', id);
  }
  listAttachments(filter: { networkId?: string; nodeId?: string } = {}): AttachmentRecord[] {
    const [n, node] = [filter.networkId ?? null, filter.nodeId ?? null];
    return this.all<AttachmentRecord>(
      'SELECT data FROM attachments WHERE (? IS NULL OR network_id = ?) AND (? IS NULL OR node_id = ?) ORDER BY id',
      n,
      n,
      node,
      node,
    );
  }
  putAttachment(a: AttachmentRecord): void {
    this.write('putAttachment', a);
  }
  deleteAttachment(id: string): void {
    this.write('deleteAttachment', id);
  }

  // services
  getService(id: string): ServiceRecord | undefined {
    return this.one<ServiceRecord>('SELECT data FROM services WHERE id = ?', id);
  }
  listServices(): ServiceRecord[] {
    return this.all<ServiceRecord>('SELECT data FROM services ORDER BY name');
  }
  putService(s: ServiceRecord): void {
    this.write('putService', s);
  }
  deleteService(id: string): void {
    this.write('deleteService', id);
  }

  // tasks
  getTask(id: string): TaskRecord | undefined {
    return this.one<TaskRecord>('SELECT data FROM tasks WHERE id = ?', id);
  }
  listTasks(filter: { serviceId?: string; nodeId?: string } = {}): TaskRecord[] {
    const [svc, node] = [filter.serviceId ?? null, filter.nodeId ?? null];
    return this.all<TaskRecord>('SELECT data FROM tasks WHERE (? IS NULL OR service_id = ?) AND (? IS NULL OR node_id = ?) ORDER BY id', svc, svc, node, node);
  }
  putTask(t: TaskRecord): void {
    this.write('putTask', t);
  }
  deleteTask(id: string): void {
    this.write('deleteTask', id);
  }
}
