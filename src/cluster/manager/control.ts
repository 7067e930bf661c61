// One manager node's share of the control plane: the replicated store, its raft member, and
// the control loops (Manager: liveness, allocation; Orchestrator: services) that run only
// while this member leads, as swarmkit runs its allocator, scheduler and dispatcher.
import { EventEmitter } from 'node:events';
import { realClock } from '../../core/clock.js';
import { errorMessage } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Logger } from '../../core/log.js';
import { ManagerClient, type ClientTls } from '../agent/client.js';
import { NotLeaderError, Raft, quorum, type Member, type RaftTransport } from '../raft/raft.js';
import { ForbiddenError, Manager, type InitOptions } from './manager.js';
import { Orchestrator } from './orchestrator.js';
import { StoreRaftLog } from './raftlog.js';
import type { Store } from './store.js';

/** Raft's calls: short, since a missed heartbeat is retried on the next one; snapshots get longer. */
const VOTE_TIMEOUT_MS = 1000;
const APPEND_TIMEOUT_MS = 2000;
const SNAPSHOT_TIMEOUT_MS = 20_000;

/** Raft's messages over the manager API, one mTLS HTTP/2 connection per peer. */
class PeerTransport implements RaftTransport {
  private readonly clients = new Map<string, ManagerClient>();
  constructor(private tls: ClientTls) {}
  setTls(tls: ClientTls): void {
    this.tls = tls;
    for (const c of this.clients.values()) c.setTls(tls);
  }
  private client(m: Member): ManagerClient {
    let c = this.clients.get(m.addr);
    if (!c) {
      c = new ManagerClient(m.addr, this.tls);
      this.clients.set(m.addr, c);
    }
    return c;
  }
  vote = (to: Member, req: unknown) => this.client(to).direct<never>('POST', '/v1/raft/vote', req, VOTE_TIMEOUT_MS);
  append = (to: Member, req: unknown) => this.client(to).direct<never>('POST', '/v1/raft/append', req, APPEND_TIMEOUT_MS);
  snapshot = (to: Member, req: unknown) => this.client(to).direct<never>('POST', '/v1/raft/snapshot', req, SNAPSHOT_TIMEOUT_MS);
  timeoutNow = (to: Member, req: unknown) => this.client(to).direct<unknown>('POST', '/v1/raft/timeout-now', req, VOTE_TIMEOUT_MS);
  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

export interface ControlPlaneOptions {
  nodeId: string;
  clusterId: string;
  store: Store;
  tls: ClientTls;
  log: Logger;
}

/** The loops that run on the leader. */
export interface Active {
  manager: Manager;
  orchestrator: Orchestrator;
}

export class ControlPlane extends EventEmitter {
  readonly store: Store;
  readonly raft: Raft;
  readonly nodeId: string;
  clusterId: string;
  private readonly transport: PeerTransport;
  private readonly log: Logger;
  private active: Active | undefined;
  private activating: Promise<void> | undefined;
  private closed = false;

  constructor(o: ControlPlaneOptions) {
    super();
    this.setMaxListeners(0);
    this.store = o.store;
    this.nodeId = o.nodeId;
    this.clusterId = o.clusterId;
    this.log = o.log;
    this.transport = new PeerTransport(o.tls);
    const raftLog = new StoreRaftLog(o.store);
    this.raft = new Raft({
      id: o.nodeId,
      store: raftLog,
      transport: this.transport,
      clock: realClock,
      members: () => this.members(),
      log: o.log.child({ component: 'raft' }),
    });
    raftLog.attach(this.raft);
    this.raft.on('role', (role: string) => {
      if (role === 'leader') void this.lead();
      else this.follow();
    });
  }

  /** The node certificate raft's connections present (renewed certificates included). */
  setTls(tls: ClientTls): void {
    this.transport.setTls(tls);
  }

  /** The voting members: every manager node in the replicated store. */
  members(): Member[] {
    return this.store
      .listNodes()
      .filter((n) => n.role === 'manager' && n.managerAddr)
      .map((n) => ({ id: n.id, addr: n.managerAddr! }));
  }

  /** Creates the cluster: this member leads term 1 alone, then writes the first state. */
  async init(o: InitOptions): Promise<Manager> {
    this.raft.bootstrap();
    const m = await Manager.init(this.store, o, this.log.child({ component: 'manager' }));
    this.clusterId = m.cluster().id;
    this.activate(m);
    return m;
  }

  /** Resumes (after a restart) or starts (a joining manager, empty until its snapshot) as a follower. */
  start(): void {
    this.raft.start();
  }

  /** The leader's control loops, or a NotLeaderError naming the leader (thrown). */
  mustLead(): Active {
    if (!this.active) throw new NotLeaderError(this.raft.leader());
    return this.active;
  }

  get leading(): Active | undefined {
    return this.active;
  }

  leaderAddr(): string | undefined {
    return this.raft.leader()?.addr;
  }

  /** Waits until this leader's writes so far are on a majority of managers. */
  committed(): Promise<void> {
    return this.raft.isLeader() ? this.raft.waitCommitted() : Promise.resolve();
  }

  private async lead(): Promise<void> {
    if (this.activating || this.active || this.closed) return;
    const term = this.raft.term;
    this.activating = (async () => {
      try {
        const m = await Manager.load(this.store, this.nodeId, this.log.child({ component: 'manager' }));
        if (!this.raft.isLeader() || this.raft.term !== term || this.closed) {
          m.close();
          return;
        }
        this.activate(m);
      } catch (e) {
        this.log.error('could not take over as leader', { error: errorMessage(e) });
      }
    })();
    await this.activating;
    this.activating = undefined;
  }

  private activate(m: Manager): void {
    // Docker refuses a demotion that would leave the reachable managers short of a majority.
    m.quorumGuard = (nodeId) => {
      const st = this.raft.status();
      const left = this.members().filter((x) => x.id !== nodeId);
      // Reachable: raft heard from it lately and its session has not closed (which is faster to tell).
      const up = (id: string): boolean => this.store.getNode(id)?.state !== 'down' && st.peers.some((p) => p.id === id && p.reachable);
      const reachable = left.filter((x) => x.id === this.nodeId || up(x.id)).length;
      if (reachable < quorum(left.length))
        throw new ForbiddenError(
          `can't remove node ${nodeId} from the managers: the remaining reachable managers (${reachable} of ${left.length}) would not make a quorum`,
        );
    };
    const orchestrator = new Orchestrator(m, this.log.child({ component: 'orchestrator' }));
    this.active = { manager: m, orchestrator };
    this.log.info('leading the swarm', { term: this.raft.term });
    this.emit('leading', this.active);
    orchestrator.kick();
  }

  private follow(): void {
    const a = this.active;
    if (!a) return;
    this.active = undefined;
    a.orchestrator.close();
    a.manager.close();
    this.log.info('no longer leading the swarm', { term: this.raft.term, leader: this.raft.leaderId });
    this.emit('following', a);
  }

  /**
   * `swarm init --force-new-cluster`: with no quorum there is no way to write through raft, so
   * this node rewrites its own state to be the only manager (the others become workers and may
   * rejoin or be promoted again), then starts a new raft incarnation alone.
   */
  forceNewCluster(): void {
    const journal = this.store.journal;
    this.store.journal = undefined;
    try {
      this.store.tx(() => {
        for (const n of this.store.listNodes()) {
          if (n.role !== 'manager' || n.id === this.nodeId) continue;
          n.role = 'worker';
          n.state = 'down';
          n.message = 'removed from the managers by --force-new-cluster';
          n.updatedAt = new Date().toISOString();
          n.version = this.store.bump();
          this.store.putNode(n);
        }
      });
    } finally {
      this.store.journal = journal;
    }
    this.raft.forceNewCluster(newId());
    this.log.warn('forced a new cluster: this node is the only manager', { term: this.raft.term });
  }

  /** Before a planned stop: hand leadership to another manager so the swarm does not wait for an election. */
  async handOver(): Promise<void> {
    if (!this.raft.isLeader() || this.members().length < 2) return;
    const t0 = Date.now();
    const ok = await this.raft.transferLeadership();
    this.log.info(ok ? 'handed leadership over' : 'could not hand leadership over', { ms: Date.now() - t0, leader: this.raft.leaderId });
  }

  close(): void {
    this.closed = true;
    this.follow();
    this.raft.stop();
    this.transport.close();
  }
}
