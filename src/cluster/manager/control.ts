// One manager node's share of the control plane: its etcd member, the store that caches etcd,
// and the control loops (Manager: liveness, allocation; Orchestrator: services) that run only on
// the manager holding the election key, as swarmkit runs its allocator, scheduler and dispatcher
// on the raft leader. The key lives on a lease this manager keeps alive; its create revision
// fences every write the loops make, so a deposed leader's writes fail.
import { EventEmitter } from 'node:events';
import { VxError, errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { Mutex } from '../../core/mutex.js';
import type { Kv } from '../etcd/kv.js';
import { peerUrl, type EtcdMember, type EtcdMemberInfo } from '../etcd/member.js';
import { RootCA } from './ca.js';
import { ForbiddenError, Manager, type InitOptions } from './manager.js';
import { Dispatcher } from './dispatcher.js';
import { Orchestrator } from './orchestrator.js';
import { KEY_PREFIX, collKey, type Store, type StoreChange } from './store.js';

export const LEADER_KEY = `${KEY_PREFIX}leader`;
/**
 * The election lease. A dead leader is rarely waited out: its manager port refusing connections
 * (its daemon died) or gossip declaring it dead frees its key at once. The lease is for what those
 * cannot see (a leader cut off): 4 s rides out a loaded etcd (400 task starts on two cores delayed
 * keep-alives past 1.5 s, and a lone manager lost its own leadership).
 */
export const LEADER_TTL_S = 4;
const KEEPALIVE_MS = 500;
/** how often the leader matches etcd's membership to the manager nodes in the store */
const MEMBERSHIP_MS = 1000;

export const quorum = (n: number): number => Math.floor(n / 2) + 1;

export class NotLeaderError extends VxError {
  constructor(readonly leaderAddr: string | undefined) {
    super(
      leaderAddr
        ? `this manager is not the leader (the leader is ${leaderAddr})`
        : "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.",
      503,
    );
  }
}

export interface ControlPlaneOptions {
  nodeId: string;
  clusterId: string;
  store: Store;
  kv: Kv;
  /** this member of etcd (membership calls) */
  etcd: EtcdMember;
  /** this manager's API address, host:port: what the leader key names */
  managerAddr: string;
  log: Logger;
}

/** The loops that run on the leader. */
export interface Active {
  manager: Manager;
  orchestrator: Orchestrator;
}

export interface ControlStatus {
  id: string;
  leader: string;
  leading: boolean;
  /** the etcd revision this manager's cache shows */
  revision: number;
  members: EtcdMemberInfo[];
  /** the nodes whose sessions this manager serves */
  sessions: string[];
}

interface LeaderValue {
  node: string;
  addr: string;
}

export class ControlPlane extends EventEmitter {
  readonly store: Store;
  readonly nodeId: string;
  clusterId: string;
  readonly etcd: EtcdMember;
  private readonly kv: Kv;
  private readonly log: Logger;
  /** this manager's API address, host:port */
  readonly ownAddr: string;
  private active: Active | undefined;
  private lease: string | undefined;
  /** when the last keep-alive that succeeded was sent */
  private renewedAt = 0;
  /** the campaign in flight */
  private campaigning: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private membershipTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** one membership pass at a time */
  private readonly membership = new Mutex();
  private lastMembers: EtcdMemberInfo[] = [];
  /** the cluster API this manager serves (openApi) */
  private facade: Active | undefined;
  /** node roles and gossip keys as last seen, for the events the watch gives */
  private readonly roles = new Map<string, string>();
  private keysSeen = '';

  constructor(o: ControlPlaneOptions) {
    super();
    this.setMaxListeners(0);
    this.store = o.store;
    this.kv = o.kv;
    this.etcd = o.etcd;
    this.nodeId = o.nodeId;
    this.clusterId = o.clusterId;
    this.ownAddr = o.managerAddr;
    this.log = o.log;
    for (const n of this.store.listNodes()) this.roles.set(n.id, n.role);
    this.keysSeen = (this.store.getCluster()?.gossipKeys ?? []).join(',');
    this.store.on('change', (changes: StoreChange[]) => {
      this.onChange(changes);
      this.watchEvents(changes);
      if (changes.some((c) => c.coll === 'cluster')) void this.syncCrl();
    });
    this.store.on('reset', () => {
      this.onChange([]);
      this.watchEvents(undefined);
    });
  }

  /**
   * The cluster API every manager serves from its own cache, writing straight to etcd (swarmkit
   * forwards to the leader instead). Opens once the store holds a cluster.
   */
  async openApi(): Promise<void> {
    if (this.facade) return;
    const m = await Manager.view(this.store, this.nodeId, this.log.child({ component: 'manager' }));
    // Docker refuses a demotion that would leave the reachable managers short of a majority.
    m.quorumGuard = (nodeId) => {
      const left = this.members().filter((x) => x.id !== nodeId);
      const reachable = left.filter((x) => x.id === this.nodeId || this.store.getNode(x.id)?.state === 'ready').length;
      if (reachable < quorum(left.length))
        throw new ForbiddenError(
          `can't remove node ${nodeId} from the managers: the remaining reachable managers (${reachable} of ${left.length}) would not make a quorum`,
        );
    };
    m.demoted = () => this.settleMembers();
    this.facade = { manager: m, orchestrator: new Orchestrator(m, this.log.child({ component: 'orchestrator' }), false) };
    this.sessions = new Dispatcher(this, this.kv, this.log.child({ component: 'dispatcher' }));
  }

  private sessions: Dispatcher | undefined;
  /** The sessions of the nodes connected to this manager (any manager serves them). */
  get dispatcher(): Dispatcher {
    if (!this.sessions) throw new VxError('this manager is starting: its store is not open yet', 503);
    return this.sessions;
  }

  /** The cluster API (any manager, leading or not). */
  get api(): Active {
    if (!this.facade) throw new VxError('this manager is starting: its store is not open yet', 503);
    return this.facade;
  }

  /**
   * What other parts hear about from the watch, whichever manager made the change: a node's new
   * role (its session ends so it switches), a node removed, the gossip keyring. `undefined`: the
   * cache was reloaded, compare everything.
   */
  private watchEvents(changes: StoreChange[] | undefined): void {
    const ids = changes
      ? [...new Set(changes.filter((c) => c.coll === 'nodes').map((c) => c.id))]
      : [...new Set([...this.roles.keys(), ...this.store.listNodes().map((n) => n.id)])];
    for (const id of ids) {
      const n = this.store.getNode(id);
      const was = this.roles.get(id);
      if (!n) {
        if (was === undefined) continue;
        this.roles.delete(id);
        this.emit('node-removed', id);
        continue;
      }
      this.roles.set(id, n.role);
      if (was !== undefined && was !== n.role) this.emit('node-role', id, n.role);
    }
    if (changes && !changes.some((c) => c.coll === 'cluster')) return;
    const keys = this.store.getCluster()?.gossipKeys ?? [];
    if (keys.join(',') === this.keysSeen) return;
    this.keysSeen = keys.join(',');
    if (keys.length) this.emit('gossip-keys', keys);
  }

  private crlWritten = '';
  /** Every manager's etcd refuses the certificates the cluster record says are revoked. */
  private async syncCrl(): Promise<void> {
    const c = this.store.getCluster();
    if (!c) return;
    const serials = c.revokedCerts ?? [];
    const key = serials.join(',');
    if (key === this.crlWritten) return;
    this.crlWritten = key;
    try {
      const ca = await RootCA.load({ certPem: c.caCertPem, keyPem: c.caKeyPem });
      await this.etcd.writeCrl(await ca.crl(serials));
      if (serials.length) this.log.info('certificate revocation list updated', { revoked: serials.length });
    } catch (e) {
      this.crlWritten = '';
      this.log.error('could not write the certificate revocation list', { error: errorMessage(e) });
    }
  }

  /** The revocation list a joining member starts with. */
  async currentCrl(): Promise<string> {
    const c = this.store.getCluster()!;
    return (await RootCA.load({ certPem: c.caCertPem, keyPem: c.caKeyPem })).crl(c.revokedCerts ?? []);
  }

  /** The managers by the store: every manager node and its API address. */
  members(): { id: string; addr: string }[] {
    return this.store
      .listNodes()
      .filter((n) => n.role === 'manager' && n.managerAddr)
      .map((n) => ({ id: n.id, addr: n.managerAddr! }));
  }

  private leaderValue(): LeaderValue | undefined {
    const c = this.store.raw(LEADER_KEY);
    if (!c) return undefined;
    try {
      return JSON.parse(c.value) as LeaderValue;
    } catch {
      return undefined;
    }
  }

  /** Creates the cluster's first state, then takes the election. */
  async init(o: InitOptions): Promise<Manager> {
    await Manager.init(this.store, o, this.log.child({ component: 'manager' })).then((m) => m.close());
    this.clusterId = this.store.getCluster()!.id;
    await this.openApi();
    void this.start();
    await this.campaign();
    if (!this.active) throw new VxError('could not take the leadership of the new swarm', 503);
    return this.active.manager;
  }

  /**
   * After etcd's --force-new-cluster this is the only member: the election key of the old
   * cluster (its lease would run out only after a TTL) goes, and this manager takes over now.
   */
  async takeOver(timeoutMs = 10_000): Promise<void> {
    // The sessions other managers served are gone with them (their leases would make those nodes
    // look alive until they ran out); the nodes that live reconnect here.
    const stale = this.store.listSessions().filter((x) => x.manager !== this.nodeId);
    const r = await this.kv.txn([], [{ del: LEADER_KEY }, ...stale.map((x) => ({ del: collKey('sessions', x.nodeId) }))]);
    await this.store.caughtUp(r.rev);
    void this.start();
    const deadline = Date.now() + timeoutMs;
    while (!this.active && Date.now() < deadline) {
      await this.campaign();
      if (!this.active) await new Promise((res) => setTimeout(res, 100));
    }
    if (!this.active) throw new VxError('could not take the leadership after forcing a new cluster', 503);
  }

  /** Campaigns whenever the leader key is free and keeps this manager's lease alive; resolves after the first try. */
  start(): Promise<void> {
    if (this.timer) return Promise.resolve();
    void this.syncCrl();
    this.timer = setInterval(() => void this.tick(), KEEPALIVE_MS);
    this.timer.unref();
    this.membershipTimer = setInterval(() => void this.reconcileMembers(), MEMBERSHIP_MS);
    this.membershipTimer.unref();
    return this.tick();
  }

  /**
   * The key names this node but not our lease: a previous run of this daemon (killed, its etcd
   * alive) held it. Nobody else can be acting on it, so it goes now instead of after its TTL.
   */
  private async reclaim(): Promise<void> {
    const c = this.store.raw(LEADER_KEY);
    if (!c || this.leaderValue()?.node !== this.nodeId || this.active || this.campaigning) return;
    const r = await this.kv.txn([{ key: LEADER_KEY, target: 'MOD', result: 'EQUAL', rev: c.mod }], [{ del: LEADER_KEY }]);
    if (r.ok) {
      this.log.info("took back the election key of this node's previous run");
      await this.store.caughtUp(r.rev, 1000);
    }
  }

  /** Only a manager by the store leads (a demoted leader hands over at once). */
  private eligible(): boolean {
    return this.store.getNode(this.nodeId)?.role === 'manager';
  }

  private onChange(changes: StoreChange[]): void {
    if (!this.store.raw(LEADER_KEY) && !this.campaigning && !this.closed) void this.campaign();
    const a = this.active;
    // The key is gone or someone else's (another manager took it when gossip said we were dead).
    if (a && this.store.raw(LEADER_KEY)?.create !== this.store.fence?.rev) return this.stepDown('another manager holds the election key');
    if (!a || !changes.length) return;
    if (!this.eligible()) return this.stepDown('this node is no longer a manager');
  }

  private async tick(): Promise<void> {
    if (this.closed) return;
    if (!this.active) {
      await this.reclaim().catch(() => undefined);
      if (!this.store.raw(LEADER_KEY)) await this.campaign();
      return;
    }
    const lease = this.lease!;
    const sent = Date.now();
    try {
      const ttl = await this.kv.leaseKeepAlive(lease);
      if (ttl > 0) this.renewedAt = sent;
      else return this.stepDown('the election lease expired');
    } catch (e) {
      this.log.debug('election keep-alive failed', { error: errorMessage(e) });
    }
    // No renewal for a lease's lifetime: another manager may hold the key by now.
    if (Date.now() - this.renewedAt > LEADER_TTL_S * 1000 - KEEPALIVE_MS) this.stepDown('could not renew the election lease');
  }

  private campaign(): Promise<void> {
    if (this.active || this.closed || !this.eligible()) return Promise.resolve();
    this.campaigning ??= this.runCampaign().finally(() => (this.campaigning = undefined));
    return this.campaigning;
  }

  private async runCampaign(): Promise<void> {
    let lease: string | undefined;
    try {
      lease = await this.kv.leaseGrant(LEADER_TTL_S);
      const sent = Date.now();
      const value: LeaderValue = { node: this.nodeId, addr: this.ownAddr };
      const r = await this.kv.txn([{ key: LEADER_KEY, target: 'CREATE', result: 'EQUAL', rev: 0 }], [{ put: LEADER_KEY, value: JSON.stringify(value), lease }]);
      if (!r.ok) {
        void this.kv.leaseRevoke(lease);
        return;
      }
      this.lease = lease;
      this.renewedAt = sent;
      await this.store.caughtUp(r.rev);
      this.store.fence = { key: LEADER_KEY, target: 'CREATE', result: 'EQUAL', rev: r.rev };
      const m = await Manager.load(this.store, this.nodeId, this.log.child({ component: 'manager' }));
      if (this.closed || this.lease !== lease) {
        m.close();
        return;
      }
      this.activate(m);
    } catch (e) {
      if (lease && !this.active) void this.kv.leaseRevoke(lease);
      if (lease === this.lease) this.lease = undefined;
      this.store.fence = undefined;
      this.log.debug('campaign failed', { error: errorMessage(e) });
    }
  }

  /**
   * A node is gone: gossip declared it dead, or its manager port refuses connections (its daemon
   * died, its host is up). If it held the election, its key goes now rather than when its lease
   * runs out (up to 4 s, more if etcd elects a new leader meanwhile, which extends every lease).
   * Safe if gossip is wrong: the key's create revision fences every write its holder makes, and a
   * live holder sees the key change and steps down.
   */
  async holderGone(nodeId: string, how: string): Promise<void> {
    const c = this.store.raw(LEADER_KEY);
    if (!c || this.active || this.closed || this.leaderValue()?.node !== nodeId || nodeId === this.nodeId) return;
    const r = await this.kv.txn([{ key: LEADER_KEY, target: 'MOD', result: 'EQUAL', rev: c.mod }], [{ del: LEADER_KEY }]).catch(() => undefined);
    if (!r?.ok) return;
    this.log.info('the leader is gone: freed its election key', { leader: nodeId, how });
    await this.store.caughtUp(r.rev, 1000);
    await this.campaign();
  }

  /** The leader's control loops, or a NotLeaderError naming the leader (thrown). */
  mustLead(): Active {
    if (!this.active) throw new NotLeaderError(this.leaderAddr());
    return this.active;
  }

  get leading(): Active | undefined {
    return this.active;
  }

  leaderAddr(): string | undefined {
    return this.leaderValue()?.addr;
  }

  leaderId(): string {
    return this.leaderValue()?.node ?? '';
  }

  status(): ControlStatus {
    return {
      id: this.nodeId,
      leader: this.leaderId(),
      leading: !!this.active,
      revision: this.store.rev,
      members: this.lastMembers,
      sessions: this.sessions?.nodes() ?? [],
    };
  }

  private activate(m: Manager): void {
    const orchestrator = new Orchestrator(m, this.log.child({ component: 'orchestrator' }));
    this.active = { manager: m, orchestrator };
    this.log.info('leading the swarm', { fence: this.store.fence?.rev });
    this.emit('leading', this.active);
    orchestrator.kick();
    void this.reconcileMembers();
  }

  private stepDown(why: string): void {
    const a = this.active;
    this.store.fence = undefined;
    const lease = this.lease;
    this.lease = undefined;
    if (lease) void this.kv.leaseRevoke(lease);
    if (!a) return;
    this.active = undefined;
    a.orchestrator.close();
    a.manager.close();
    this.log.info('no longer leading the swarm', { why, leader: this.leaderId() });
    this.emit('following', a);
  }

  // ---- etcd membership ----

  /**
   * Adds a manager node's etcd as a learner (it votes once promoted, when caught up) and answers
   * with the cluster it must start in: name → peer URL of every member.
   */
  async addMember(nodeId: string): Promise<Record<string, string>> {
    // Not under the membership lock: etcd orders its own changes, and the membership pass
    // must go on promoting the learner ahead of this one meanwhile.
    {
      const n = this.store.getNode(nodeId);
      if (!n || n.role !== 'manager') throw new ForbiddenError(`node ${nodeId} is not a manager`);
      const url = peerUrl(n.addr);
      let members = await this.etcd.members();
      if (!members.some((m) => m.peerURLs?.includes(url))) {
        await this.etcd.addLearner(url);
        members = await this.etcd.members();
      }
      this.lastMembers = members;
      return initialCluster(members, url, nodeId, this.store.listNodes());
    }
  }

  /** Removes this manager's own member (swarm leave): the others no longer count or hear it. */
  async leaveMembers(): Promise<void> {
    const url = this.etcd.peerUrl;
    const members = await this.etcd.members();
    const me = members.find((m) => m.peerURLs?.includes(url));
    if (!me || members.length < 2) return;
    await this.etcd.remove(me.ID);
    this.log.info('removed this manager from etcd');
  }

  /**
   * Removes demoted members now and waits (up to 5 s) until etcd has a leader again: removing the
   * member that led etcd costs an election, and writes sent meanwhile would wait it out.
   */
  private async settleMembers(): Promise<void> {
    await this.membership.lock(() => Promise.resolve());
    // Whichever manager made the demotion removes the member (the leader's pass may too: etcd
    // refuses the second removal, which changes nothing).
    await this.reconcileMembers(true);
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && !(await this.etcd.healthy())) await new Promise((r) => setTimeout(r, 100));
  }

  /** The leader keeps etcd's members equal to the manager nodes: promote learners, remove the demoted. */
  private reconcileMembers(evenFollowing = false): Promise<void> {
    if ((!this.active && !evenFollowing) || this.closed || this.membership.locked) return Promise.resolve();
    return this.membership
      .lock(async () => {
        const members = await this.etcd.members();
        this.lastMembers = members;
        const managers = new Set(this.store.listNodes().flatMap((n) => (n.role === 'manager' ? [peerUrl(n.addr)] : [])));
        for (const m of members) {
          const url = m.peerURLs?.[0] ?? '';
          if (!managers.has(url)) {
            if (url === this.etcd.peerUrl) continue;
            await this.etcd.remove(m.ID);
            this.log.info('removed a member that is no longer a manager from etcd', { member: m.name ?? m.ID, url });
          } else if (m.isLearner) {
            await this.etcd.promote(m.ID).then(
              () => this.log.info('promoted an etcd learner', { url }),
              () => undefined, // not caught up yet
            );
          }
        }
      })
      .catch((e: unknown) => this.log.debug('etcd membership pass failed', { error: errorMessage(e) }));
  }

  /** Before a planned stop: free the election key so another manager takes over at once. */
  handOver(): Promise<void> {
    if (this.active) this.stepDown('handing over');
    return Promise.resolve();
  }

  close(): void {
    this.closed = true;
    this.sessions?.close();
    if (this.timer) clearInterval(this.timer);
    if (this.membershipTimer) clearInterval(this.membershipTimer);
    this.stepDown('stopping');
  }
}

/** etcd's --initial-cluster for a member joining an existing cluster. */
export function initialCluster(members: EtcdMemberInfo[], selfUrl: string, selfName: string, nodes: { id: string; addr: string }[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of members)
    for (const u of m.peerURLs ?? []) {
      const name = u === selfUrl ? selfName : m.name || nodes.find((n) => peerUrl(n.addr) === u)?.id || `m${m.ID}`;
      out[name] = u;
    }
  return out;
}
