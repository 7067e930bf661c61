// The sessions of the nodes connected to this manager. Any manager serves them (swarmkit's
// dispatcher runs on the leader only): assignments come from this manager's own cache, reports go
// straight to etcd, and a node's liveness is a key, `/vxswarm/sessions/<node>`, that exists while
// its session does. The key lives on this manager's session lease, so it also goes when this
// manager dies or is cut off; the leader marks nodes from those keys. This manager's own node has
// a session too, in-process (agent/local.ts), served by the same code.
import { VxError, errorMessage } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Logger } from '../../core/log.js';
import type { Kv } from '../etcd/kv.js';
import type { ControlPlane } from './control.js';
import type { TunnelPeer } from '../../overlay/tunnel.js';
import { ENCRYPTED_OPTION, HEARTBEAT_MISSES, HEARTBEAT_PERIOD_MS } from './manager.js';
import { collKey, type Store, type StoreChange } from './store.js';
import { INGRESS_SBOX, type NodeReport, type SessionRecord, type TaskRecord } from './types.js';

/** The session lease: a dead or cut-off manager's sessions vanish within this. */
export const SESSION_TTL_S = 4;
const KEEPALIVE_MS = 1000;
/** how long a node has to answer a logs request */
const LOGS_TIMEOUT_MS = 5000;
/**
 * A node that said goodbye (its daemon stopping, most often to restart) stays up this long: its
 * tasks are not moved for a restart of a second or two. A daemon that dies says nothing and is
 * down at once.
 */
export const GOODBYE_GRACE_MS = 10_000;

/** A node's own tunnel address and the peers its WireGuard interface has. */
export interface TunnelAssignment {
  ip: string;
  peers: TunnelPeer[];
}

/** A service's VIP on one network, as a node's resolver and load balancer need it. */
export interface ServiceVipEntry {
  serviceId: string;
  service: string;
  networkId: string;
  ip: string;
  aliases?: string[];
}

/** An ingress-published port of a service: every node's routing mesh serves it. */
export interface MeshPort {
  service: string;
  protocol: 'tcp' | 'udp';
  publishedPort: number;
  targetPort: number;
}

/** What a node's routing mesh needs from its manager: its sandbox's ingress address, and every ingress port. */
export interface MeshAssignment {
  sbox?: { id: string; ip: string; mac: string };
  ports: MeshPort[];
}

/** The node's end of one session, whatever carries it. */
export interface SessionPeer {
  /** in-process (this manager's own node): no heartbeats, never silent */
  readonly local: boolean;
  send(msg: Record<string, unknown>): void;
  /** Ends the session. `refused`: the node is no longer a member of the swarm. */
  close(how: 'normal' | 'refused'): void;
}

/** What the carrier tells the dispatcher. */
export interface SessionHandle {
  /** any bytes from the node (heartbeats included) */
  heard(): void;
  /** one message up from the node */
  receive(msg: Record<string, unknown>): void;
  /** the carrier closed */
  closed(): void;
}

export interface LogLine {
  time: string;
  stream: string;
  text: string;
  [k: string]: unknown;
}

interface Live {
  nodeId: string;
  peer: SessionPeer;
  openedAt: number;
  heard: number;
  /** mod revision of our session key (0 until written) */
  rev: number;
  lastSet: string;
  done: boolean;
  /** the node said goodbye */
  bye: boolean;
}

export class Dispatcher {
  private readonly live = new Set<Live>();
  private lease: string | undefined;
  private renewedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private beat: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly logWaiters = new Map<string, { nodeId: string; done: (lines: LogLine[]) => void }>();

  constructor(
    private readonly ctl: ControlPlane,
    private readonly kv: Kv,
    private readonly log: Logger,
  ) {
    this.store.on('change', this.onChange);
    this.store.on('reset', this.onReset);
    ctl.on('node-role', this.onRole);
    ctl.on('node-removed', this.onRemoved);
    ctl.on('gossip-keys', this.onKeys);
    this.timer = setInterval(() => void this.keepAlive(), KEEPALIVE_MS);
    this.timer.unref();
    this.scheduleBeat();
  }

  /** The swarm's heartbeat period (swarm update --dispatcher-heartbeat), read at every beat. */
  private get period(): number {
    return this.store.getCluster()?.heartbeatMs ?? HEARTBEAT_PERIOD_MS;
  }

  private scheduleBeat(): void {
    this.beat = setTimeout(() => {
      this.heartbeat();
      if (!this.closed) this.scheduleBeat();
    }, this.period);
    this.beat.unref();
  }

  private get store(): Store {
    return this.ctl.store;
  }

  /** Nodes with a session here. */
  nodes(): string[] {
    return [...new Set([...this.live].map((s) => s.nodeId))];
  }

  /**
   * A node opens a session: its key is written first (a manager that cannot write it refuses with
   * 503, and the node tries another), then the welcome and its assignments go down.
   */
  async open(nodeId: string, peer: SessionPeer): Promise<SessionHandle> {
    if (this.closed) throw new VxError('this manager is stopping', 503);
    const node = this.store.getNode(nodeId);
    if (!node) throw new VxError('this node is no longer a member of the swarm', 401);
    const s: Live = { nodeId, peer, openedAt: Date.now(), heard: Date.now(), rev: 0, lastSet: '', done: false, bye: false };
    this.live.add(s);
    try {
      await this.putKey(s);
    } catch (e) {
      this.live.delete(s);
      throw e instanceof VxError && e.status >= 500 ? e : new VxError(`could not record the session: ${errorMessage(e)}`, 503);
    }
    if (s.done) throw new VxError('the session closed while it opened', 503);
    peer.send({ type: 'welcome', node, managers: this.ctl.members().map((m) => m.addr), gossipKeys: this.store.getCluster()?.gossipKeys ?? [] });
    setImmediate(() => this.sendAssignments(s));
    return {
      heard: () => (s.heard = Date.now()),
      receive: (msg) => this.receive(s, msg),
      closed: () => this.ended(s),
    };
  }

  /** A service's lines (from `since`, an ISO time) from a node with a session here; undefined if it has none here. */
  requestLogs(nodeId: string, serviceId: string, since?: string): Promise<LogLine[]> | undefined {
    const s = [...this.live].reverse().find((x) => x.nodeId === nodeId && !x.done);
    if (!s) return undefined;
    const reqId = newId();
    return new Promise((resolve) => {
      const timer = setTimeout(() => done([]), LOGS_TIMEOUT_MS);
      const done = (lines: LogLine[]): void => {
        clearTimeout(timer);
        this.logWaiters.delete(reqId);
        resolve(lines);
      };
      this.logWaiters.set(reqId, { nodeId, done });
      s.peer.send({ type: 'logs-request', reqId, serviceId, ...(since ? { since } : {}) });
    });
  }

  /** Stops serving: remote sessions end (their nodes go to another manager); keys run out with the lease. */
  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    clearTimeout(this.beat);
    this.beat = undefined;
    this.store.off('change', this.onChange);
    this.store.off('reset', this.onReset);
    this.ctl.off('node-role', this.onRole);
    this.ctl.off('node-removed', this.onRemoved);
    this.ctl.off('gossip-keys', this.onKeys);
    for (const w of this.logWaiters.values()) w.done([]);
    for (const s of [...this.live]) {
      s.done = true;
      s.peer.close('normal');
    }
    this.live.clear();
  }

  private granting: Promise<string> | undefined;
  /** The session lease; one grant at a time (keys on a second, forgotten lease would run out). */
  private leaseId(): Promise<string> {
    if (this.lease) return Promise.resolve(this.lease);
    this.granting ??= this.kv
      .leaseGrant(SESSION_TTL_S)
      .then((id) => {
        this.lease = id;
        this.renewedAt = Date.now();
        return id;
      })
      .finally(() => (this.granting = undefined));
    return this.granting;
  }

  /** What a session's key says. */
  private record(s: Live): SessionRecord {
    return { nodeId: s.nodeId, manager: this.ctl.nodeId, managerAddr: this.ctl.ownAddr, openedAt: new Date(s.openedAt).toISOString() };
  }

  private async putKey(s: Live, again = true): Promise<void> {
    const lease = await this.leaseId();
    try {
      const r = await this.kv.txn([], [{ put: collKey('sessions', s.nodeId), value: JSON.stringify(this.record(s)), lease }]);
      s.rev = r.rev;
    } catch (e) {
      // The lease ran out before the keep-alive noticed: a new one, for the other sessions too.
      if (!again || !/lease not found/i.test(errorMessage(e))) throw e;
      if (this.lease === lease) void this.leaseLost(lease);
      await this.putKey(s, false);
    }
  }

  private leaseLost(lease: string): Promise<void> {
    if (this.lease !== lease) return Promise.resolve();
    this.lease = undefined;
    this.log.info('the session lease ran out: writing every session key again');
    return Promise.all([...this.live].filter((s) => s.rev).map((s) => this.putKey(s, false))).then(
      () => undefined,
      (e: unknown) => this.log.warn('could not write the session keys again', { error: errorMessage(e) }),
    );
  }

  /** Our key goes with the session, unless a newer session (here or on another manager) wrote it since. */
  private ended(s: Live): void {
    if (s.done) return;
    s.done = true;
    this.live.delete(s);
    if (!this.nodes().includes(s.nodeId)) for (const w of this.logWaiters.values()) if (w.nodeId === s.nodeId) w.done([]);
    if (!s.rev || this.closed) return;
    const key = collKey('sessions', s.nodeId);
    const unless = { key, target: 'MOD' as const, result: 'EQUAL' as const, rev: s.rev };
    const failed = (e: unknown): void => this.log.debug('could not end a session key (its lease will)', { node: s.nodeId, error: errorMessage(e) });
    if (!s.bye) {
      void this.kv.txn([unless], [{ del: key }]).catch(failed);
      return;
    }
    // A goodbye: the key says so, on a lease of the grace's length that nobody keeps alive, so it
    // goes by itself then, unless the node is back (its new session's key replaces it).
    const rec = { ...this.record(s), goodbyeUntil: new Date(Date.now() + GOODBYE_GRACE_MS).toISOString() };
    const w = this.kv
      .leaseGrant(GOODBYE_GRACE_MS / 1000)
      .then((lease) => this.kv.txn([unless], [{ put: key, value: JSON.stringify(rec), lease }]))
      .then(() => undefined, failed)
      .finally(() => this.writes.delete(w));
    this.writes.add(w);
  }

  private readonly writes = new Set<Promise<void>>();
  /** Settles once the goodbyes said so far are written (a stopping manager's own node's among them), or after 1 s. */
  drain(): Promise<void> {
    return Promise.race([Promise.all([...this.writes]).then(() => undefined), new Promise<void>((r) => setTimeout(r, 1000).unref())]);
  }

  private receive(s: Live, msg: Record<string, unknown>): void {
    s.heard = Date.now();
    if (msg.type === 'bye') {
      s.bye = true;
      s.peer.close('normal');
      this.ended(s);
    } else if (msg.type === 'state') {
      let r: NodeReport;
      try {
        r = parseNodeReport(msg);
      } catch (e) {
        this.log.warn('bad node report', { node: s.nodeId, error: errorMessage(e) });
        return;
      }
      this.ctl.api.orchestrator
        .nodeReport(s.nodeId, r, s.openedAt)
        .catch((e: unknown) => this.log.warn('could not apply a node report', { node: s.nodeId, error: errorMessage(e) }));
    } else if (msg.type === 'wireguard') {
      this.ctl.api.manager
        .setWireguardKey(s.nodeId, msg.publicKey)
        .catch((e: unknown) => this.log.warn('could not record a WireGuard key', { node: s.nodeId, error: errorMessage(e) }));
    } else if (msg.type === 'logs' && typeof msg.reqId === 'string' && Array.isArray(msg.lines)) {
      const w = this.logWaiters.get(msg.reqId);
      if (w && w.nodeId === s.nodeId) w.done((msg.lines as LogLine[]).filter((l) => l && typeof l.text === 'string' && typeof l.time === 'string'));
    }
  }

  /** The node's complete assignment set, sent whenever it differs from the last one. */
  private sendAssignments(s: Live): void {
    // A removed node hears only its refusal: an empty assignment first would stop its tasks.
    if (s.done || !this.store.getNode(s.nodeId)) return;
    const tasks: TaskRecord[] = this.ctl.api.orchestrator.assignments(s.nodeId);
    const netIds = new Set(tasks.flatMap((t) => t.networks.map((n) => n.networkId)));
    const vips = this.vipsOn(netIds);
    const mesh = this.meshOf(s.nodeId);
    const tunnel = this.tunnelOf(s.nodeId, netIds);
    // Every node has the ingress network, for its routing mesh sandbox.
    const ingress = this.store.listNetworks().find((n) => n.ingress);
    if (ingress) netIds.add(ingress.id);
    // The data of the configs its tasks name (only the node running such a task gets it).
    const configIds = new Set(tasks.flatMap((t) => (t.spec.configs ?? []).map((c) => c.configId)));
    const configs = [...configIds]
      .map((id) => this.store.getConfig(id))
      .filter((c) => c !== undefined)
      .map((c) => ({ id: c.id, data: c.data }));
    const key = JSON.stringify([tasks.map((t) => [t.id, t.version]), vips, mesh, ingress?.version, tunnel, configs.map((c) => c.id)]);
    if (key === s.lastSet) return;
    s.lastSet = key;
    s.peer.send({
      type: 'assignments',
      tasks,
      networks: [...netIds].map((id) => this.store.getNetwork(id)).filter((n) => n),
      vips,
      mesh,
      ...(tunnel ? { tunnel } : {}),
      ...(configs.length ? { configs } : {}),
    });
  }

  private meshOf(nodeId: string): MeshAssignment {
    const ingress = this.store.listNetworks().find((n) => n.ingress);
    const a = ingress && this.store.listAttachments({ networkId: ingress.id, nodeId }).find((x) => x.name === INGRESS_SBOX);
    const ports: MeshPort[] = [];
    for (const svc of this.store.listServices())
      for (const p of svc.ports ?? [])
        if (p.publishMode === 'ingress') ports.push({ service: svc.spec.name, protocol: p.protocol, publishedPort: p.publishedPort, targetPort: p.targetPort });
    ports.sort((x, y) => x.publishedPort - y.publishedPort || x.protocol.localeCompare(y.protocol));
    return { ...(a ? { sbox: { id: a.id, ip: a.ip, mac: a.mac } } : {}), ports };
  }

  /**
   * The node's tunnel address and its WireGuard peers: exactly the nodes holding an endpoint on
   * an encrypted network this node has tasks on. A node removed from the swarm drops out of
   * every list at once (its record goes), so nobody decrypts for it any more.
   */
  private tunnelOf(nodeId: string, netIds: Set<string>): TunnelAssignment | undefined {
    const self = this.store.getNode(nodeId);
    if (!self?.tunnelIp) return undefined;
    const others = new Set<string>();
    for (const id of netIds) {
      if (!(ENCRYPTED_OPTION in (this.store.getNetwork(id)?.options ?? {}))) continue;
      for (const a of this.store.listAttachments({ networkId: id })) if (a.nodeId && a.nodeId !== nodeId) others.add(a.nodeId);
    }
    const peers: TunnelPeer[] = [];
    for (const id of [...others].sort()) {
      const n = this.store.getNode(id);
      if (n?.wgPublicKey && n.tunnelIp) peers.push({ nodeId: n.id, publicKey: n.wgPublicKey, addr: n.addr, tunnelIp: n.tunnelIp });
    }
    return { ip: self.tunnelIp, peers };
  }

  /** The VIPs of every service on these networks (the node's tasks resolve and reach them). */
  private vipsOn(netIds: Set<string>): ServiceVipEntry[] {
    const out: ServiceVipEntry[] = [];
    for (const svc of this.store.listServices())
      for (const v of svc.vips ?? []) {
        if (!netIds.has(v.networkId)) continue;
        const aliases = svc.spec.networks.find((n) => n.target === v.networkId)?.aliases ?? [];
        out.push({ serviceId: svc.id, service: svc.spec.name, networkId: v.networkId, ip: v.ip, ...(aliases.length ? { aliases } : {}) });
      }
    return out.sort((a, b) => (a.serviceId + a.networkId < b.serviceId + b.networkId ? -1 : 1));
  }

  private readonly onChange = (changes: StoreChange[]): void => {
    // Nodes too: a peer's new WireGuard key, or its removal, changes the tunnel's peers.
    if (!changes.some((c) => c.coll === 'tasks' || c.coll === 'networks' || c.coll === 'services' || c.coll === 'attachments' || c.coll === 'nodes')) return;
    for (const s of this.live) this.sendAssignments(s);
  };
  private readonly onReset = (): void => {
    for (const s of this.live) this.sendAssignments(s);
  };
  /** A new role: the session ends; the node reconnects, reads its role in the welcome and switches. */
  private readonly onRole = (id: string): void => this.closeNode(id, 'normal');
  private readonly onRemoved = (id: string): void => this.closeNode(id, 'refused');
  private readonly onKeys = (keys: string[]): void => {
    for (const s of this.live) s.peer.send({ type: 'gossip-keys', gossipKeys: keys });
  };

  private closeNode(id: string, how: 'normal' | 'refused'): void {
    for (const s of [...this.live]) if (s.nodeId === id) s.peer.close(how);
  }

  /** Beats down, so an agent notices a manager it can no longer hear; silent nodes' sessions end. */
  private heartbeat(): void {
    const t = Date.now();
    for (const s of [...this.live]) {
      if (s.peer.local) continue;
      if (t - s.heard > this.period * HEARTBEAT_MISSES) {
        this.log.info('no heartbeat from a node: ending its session', { node: s.nodeId });
        s.peer.close('normal');
        this.ended(s);
      } else s.peer.send({ type: 'heartbeat', periodMs: this.period });
    }
  }

  /**
   * Keeps the session lease alive. Lost (expired while etcd was away): a new one, and every live
   * session's key again; if that fails (etcd back but not yet serving), every tick tries again
   * until the keys are back. Not renewed for a lease's lifetime: this manager is cut off and the
   * leader has marked its nodes down, so their sessions end and they find another manager.
   */
  private keeping = false;
  private async keepAlive(): Promise<void> {
    // One keep-alive at a time, and a lost lease is the one that was sent: two answers of the
    // same lost lease must not each grant a new one (keys left on a lease nobody keeps alive).
    const lease = this.lease;
    const keyed = (): Live[] => [...this.live].filter((s) => s.rev && !s.done && this.store.getNode(s.nodeId));
    if (this.closed || this.keeping || (!lease && !keyed().length)) return;
    this.keeping = true;
    const sent = Date.now();
    try {
      if (lease) {
        const ttl = await this.kv.leaseKeepAlive(lease);
        if (ttl <= 0) return await this.leaseLost(lease);
        this.renewedAt = sent;
      }
      // A key our sessions should have and the store does not (it went with a lease lost in a
      // race, or was deleted by hand, or the rewrite after a lost lease failed) is written again.
      for (const s of keyed())
        if (!lease || !this.store.getSession(s.nodeId))
          await this.putKey(s, false).catch((e: unknown) => this.log.debug('could not rewrite a session key', { node: s.nodeId, error: errorMessage(e) }));
    } catch (e) {
      this.log.debug('session lease keep-alive failed', { error: errorMessage(e) });
    } finally {
      this.keeping = false;
    }
    if (Date.now() - this.renewedAt > SESSION_TTL_S * 1000) {
      const remote = [...this.live].filter((s) => !s.peer.local);
      if (remote.length) this.log.warn('cannot renew the session lease: ending the nodes’ sessions here', { sessions: remote.length });
      for (const s of remote) {
        s.peer.close('normal');
        this.ended(s);
      }
    }
  }
}

/** A node's report, type-checked: a malformed one changes nothing. */
export function parseNodeReport(m: Record<string, unknown>): NodeReport {
  const strings = (v: unknown, what: string): string[] => {
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new VxError(`node report: "${what}" must be a list of strings`, 400);
    return v as string[];
  };
  if (!Array.isArray(m.tasks)) throw new VxError('node report: "tasks" must be a list', 400);
  const tasks = m.tasks.map((t: Record<string, unknown>) => {
    if (typeof t?.id !== 'string' || !['created', 'running', 'exited', 'dead'].includes(t.status as string) || typeof t.exitCode !== 'number')
      throw new VxError('node report: a task needs id, status and exitCode', 400);
    return {
      id: t.id,
      status: t.status as NodeReport['tasks'][number]['status'],
      exitCode: t.exitCode,
      containerId: typeof t.containerId === 'string' ? t.containerId : '',
    };
  });
  const creating = typeof m.creating === 'number' && m.creating > 0 ? { creating: m.creating } : {};
  return { tasks, starting: strings(m.starting, 'starting'), attachments: strings(m.attachments, 'attachments'), ...creating };
}
