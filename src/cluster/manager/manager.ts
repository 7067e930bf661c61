// The swarm manager: cluster identity, CA and tokens, nodes and their liveness, overlay
// networks with their VNIs and subnets, and endpoint attachments with their addresses.
// Transport-free: the manager API server and the local Engine API both call into this.
import { EventEmitter } from 'node:events';
import { ConflictError, InvalidArgumentError, NotFoundError, VxError } from '../../core/errors.js';
import { newId, randomMac } from '../../core/ids.js';
import { formatIp, overlaps, parseCidr, parseIp, sizeOf } from '../../core/ipv4.js';
import type { Logger } from '../../core/log.js';
import { DEFAULT_CERT_DAYS, RootCA, certInfo, type Role } from './ca.js';
import { DEFAULT_ADDR_POOL, DEFAULT_SUBNET_SIZE, checkPool, nextFitIp, parseVniList, planSubnets, planVnis, type SubnetRequest } from './allocator.js';
import type { Store, StoreChange } from './store.js';
import { TUNNEL_POOL } from '../../overlay/tunnel.js';
import { isWgKey } from '../../kernel/wireguard.js';
import { caDigest, formatToken, newSecret, parseToken, secretsEqual } from './tokens.js';
import { randomBytes } from 'node:crypto';
import { createConfigTx, findConfig, removeConfigTx, updateConfigTx, type ConfigCreate } from './configs.js';
import type { AttachmentRecord, Availability, ClusterRecord, ConfigRecord, NetworkRecord, NodeRecord, NodeResources } from './types.js';

export const VXLANID_OPTION = 'com.docker.network.driver.overlay.vxlanid_list';
export const MTU_OPTION = 'com.docker.network.driver.mtu';
export const ENCRYPTED_OPTION = 'encrypted';

/** The lowest tunnel address no node holds. */
export function nextTunnelIp(nodes: NodeRecord[]): string {
  const pool = parseCidr(TUNNEL_POOL);
  const held = new Set(nodes.map((n) => n.tunnelIp).filter((x): x is string => !!x));
  for (let i = 1; i < sizeOf(pool) - 1; i++) {
    const ip = formatIp((pool.network + i) >>> 0);
    if (!held.has(ip)) return ip;
  }
  throw new VxError(`no WireGuard tunnel address left in ${TUNNEL_POOL}`, 503);
}
export const DEFAULT_DATA_PATH_PORT = 4789;
/** A session that sends nothing for this long is ended, and its node marked down (a closed one is at once). */
export const HEARTBEAT_PERIOD_MS = 500;
/** a session silent for this many heartbeat periods is gone */
export const HEARTBEAT_MISSES = 5;
/** Extra time nodes get to reconnect when a manager (re)starts leading. */
export const TAKEOVER_GRACE_MS = 3000;
/** manager certificates remembered per node (renewals add one each) */
const MAX_MANAGER_CERTS = 8;
/** serials the CRL keeps (certificates live 90 days; the oldest entries have long expired) */
const MAX_REVOKED_CERTS = 1000;
/** endpoints of its own (not tasks') a node may hold on one network */
export const MAX_LOCAL_ATTACHMENTS = 64;

/** names Docker keeps for its local networks on every node (docker_gwbridge is every swarm node's) */
export const PREDEFINED_NETWORKS = ['bridge', 'docker_gwbridge', 'host', 'none'];

export const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;

export class ForbiddenError extends VxError {
  constructor(message: string) {
    super(message, 403);
  }
}

export interface InitOptions {
  nodeId: string;
  hostname: string;
  advertiseAddr: string;
  /** this manager's API address, host:port */
  managerAddr: string;
  engineVersion: string;
  resources?: NodeResources;
  defaultAddrPool?: string[];
  subnetSize?: number;
  dataPathPort?: number;
  certDays?: number;
  clusterId?: string;
  /** the serial of the first manager's own certificate (revoked if it is ever demoted) */
  certSerial?: string;
  /** the swarm's root CA (made first: the manager's etcd needs its certificate before the store opens) */
  ca: { certPem: string; keyPem: string };
}

export interface NetworkCreate {
  name: string;
  driver?: string;
  attachable?: boolean;
  internal?: boolean;
  ingress?: boolean;
  labels?: Record<string, string>;
  options?: Record<string, string>;
  subnets?: SubnetRequest[];
}

export interface JoinRequest {
  token: string;
  csrPem: string;
  hostname: string;
  addr: string;
  availability?: Availability;
  engineVersion: string;
  resources?: NodeResources;
  /** a joining manager's API port */
  managerPort?: number;
}

export interface JoinResult {
  nodeId: string;
  role: Role;
  certPem: string;
  caPem: string;
  clusterId: string;
}

export const now = (): string => new Date().toISOString();

/** A manager's certificate names its advertise address and loopback (etcd's peer and client URLs). */
export function managerIps(role: Role, addr: string): string[] {
  return role === 'manager' ? [...new Set([addr, '127.0.0.1'].filter(Boolean))] : [];
}

export class Manager extends EventEmitter {
  private timer: NodeJS.Timeout | undefined;
  /** set unless this manager leads (load()): it marks no node */
  private closing = true;

  private constructor(
    readonly store: Store,
    readonly ca: RootCA,
    readonly selfId: string,
    private readonly log: Logger,
  ) {
    super();
  }

  /** Creates a cluster: root CA, tokens, this node as leader, the ingress network. */
  static async init(store: Store, o: InitOptions, log: Logger): Promise<Manager> {
    if (store.getCluster()) throw new ConflictError('This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.');
    const pool = o.defaultAddrPool?.length ? o.defaultAddrPool : DEFAULT_ADDR_POOL;
    const size = o.subnetSize || DEFAULT_SUBNET_SIZE;
    checkPool(pool, size);
    const port = o.dataPathPort || DEFAULT_DATA_PATH_PORT;
    if (!Number.isInteger(port) || port < 1024 || port > 49151) throw new InvalidArgumentError(`invalid data path port ${port}: must be 1024..49151`);
    const pair = o.ca;
    const ca = await RootCA.load(pair);
    const t = now();
    const cluster: ClusterRecord = {
      id: o.clusterId ?? newId(),
      createdAt: t,
      updatedAt: t,
      version: 1,
      defaultAddrPool: pool,
      subnetSize: size,
      dataPathPort: port,
      workerSecret: newSecret(),
      managerSecret: newSecret(),
      caCertPem: pair.certPem,
      caKeyPem: pair.keyPem,
      certDays: o.certDays ?? DEFAULT_CERT_DAYS,
      gossipKeys: [randomBytes(32).toString('base64')],
    };
    const m = new Manager(store, ca, o.nodeId, log);
    await store.tx(() => {
      store.putCluster({ ...cluster, version: store.bump() });
      store.putNode({
        ...(o.certSerial ? { managerCerts: [o.certSerial] } : {}),
        id: o.nodeId,
        hostname: o.hostname,
        role: 'manager',
        availability: 'active',
        addr: o.advertiseAddr,
        managerAddr: o.managerAddr,
        state: 'ready',
        message: '',
        engineVersion: o.engineVersion,
        ...(o.resources ? { resources: o.resources } : {}),
        tunnelIp: nextTunnelIp([]),
        labels: {},
        version: store.bump(),
        createdAt: t,
        updatedAt: t,
      });
      // The seed's ingress: 10.255.0.0/16 outside the /24s handed to user networks when the
      // default pool is in use (as Docker did), else the first subnet of the custom pool.
      const ingressSubnet = pool === DEFAULT_ADDR_POOL ? [{ subnet: '10.255.0.0/16', gateway: '10.255.0.1' }] : [];
      m.createNetworkTx({ name: 'ingress', driver: 'overlay', ingress: true, subnets: ingressSubnet });
    });
    return m;
  }

  /**
   * The cluster API over a store, as every manager serves it: reads from its cache, writes as
   * etcd transactions. No liveness timer and no sessions: those are the leader's (load()).
   */
  static async view(store: Store, selfId: string, log: Logger): Promise<Manager> {
    const c = store.getCluster();
    if (!c) throw new NotFoundError('no swarm state in this store');
    return new Manager(store, await RootCA.load({ certPem: c.caCertPem, keyPem: c.caKeyPem }), selfId, log);
  }

  /**
   * The leader's manager of an existing cluster: it marks nodes from their session keys, which
   * whichever manager serves a node's session keeps (dispatcher.ts).
   */
  static async load(store: Store, selfId: string, log: Logger): Promise<Manager> {
    const m = await Manager.view(store, selfId, log);
    // A node without a session is unknown, not down, for a grace period: its tasks stay put while
    // it finds a manager (a lost session backs off up to 2 s).
    const t = Date.now() + TAKEOVER_GRACE_MS;
    await store.tx(() => {
      for (const n of store.listNodes()) {
        if (n.id === selfId) m.setState(n, 'ready', '');
        else if (!store.getSession(n.id)) {
          if (n.state !== 'down') m.setState(n, 'unknown', 'waiting for the node to reconnect');
          m.absent.set(n.id, { at: t, closed: false });
        }
      }
    });
    m.start();
    return m;
  }

  private start(): void {
    this.closing = false;
    this.timer = setInterval(() => this.checkSessions(), HEARTBEAT_PERIOD_MS / 2);
    this.timer.unref();
    this.store.on('change', this.onChange);
  }

  close(): void {
    this.closing = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.store.off('change', this.onChange);
  }

  cluster(): ClusterRecord {
    const c = this.store.getCluster();
    if (!c) throw new NotFoundError('no swarm');
    return c;
  }

  get caDigest(): string {
    return caDigest(this.ca.der);
  }

  joinTokens(): { worker: string; manager: string } {
    const c = this.cluster();
    return { worker: formatToken(this.caDigest, c.workerSecret), manager: formatToken(this.caDigest, c.managerSecret) };
  }

  /** The gossip keyring nodes get over their sessions: primary first. */
  gossipKeys(): string[] {
    return this.cluster().gossipKeys ?? [];
  }

  /**
   * Rotates the gossip key in two steps so no message is lost: every node first accepts the new
   * key (`stage`), then sends with it (`switch`); the oldest of more than three keys is dropped.
   */
  rotateGossipKey(step: 'stage' | 'switch'): Promise<string[]> {
    return this.store.tx(() => {
      const c = this.cluster();
      const keys = [...this.gossipKeys()];
      if (step === 'stage') keys.push(randomBytes(32).toString('base64'));
      else if (keys.length > 1) keys.unshift(keys.pop()!);
      c.gossipKeys = keys.slice(0, 3);
      c.version = this.store.bump();
      this.store.putCluster(c);
      return c.gossipKeys;
    });
  }

  /** `swarm update --task-history-limit / --cert-expiry`: checked, then written in one go. */
  async updateSettings(o: { taskHistory?: number; certDays?: number; heartbeatMs?: number }): Promise<void> {
    if (o.heartbeatMs !== undefined && !(o.heartbeatMs >= 500 && o.heartbeatMs <= 60_000))
      throw new InvalidArgumentError(`invalid dispatcher heartbeat period ${o.heartbeatMs / 1000}s: 500ms to 1m`);
    if (o.taskHistory !== undefined && (!Number.isInteger(o.taskHistory) || o.taskHistory < 0 || o.taskHistory > 1000))
      throw new InvalidArgumentError(`invalid task history limit ${o.taskHistory}: 0 to 1000`);
    if (o.certDays !== undefined && !(o.certDays >= 1 / 24)) throw new InvalidArgumentError('minimum certificate expiry time is 1h0m0s');
    return this.store.tx(() => {
      const c = this.cluster();
      if (o.taskHistory !== undefined) c.taskHistory = o.taskHistory;
      if (o.certDays !== undefined) c.certDays = o.certDays;
      if (o.heartbeatMs !== undefined) c.heartbeatMs = o.heartbeatMs;
      c.updatedAt = now();
      c.version = this.store.bump();
      this.store.putCluster(c);
    });
  }

  rotateToken(role: Role): Promise<void> {
    return this.store.tx(() => {
      const c = this.cluster();
      if (role === 'worker') c.workerSecret = newSecret();
      else c.managerSecret = newSecret();
      c.updatedAt = now();
      c.version = this.store.bump();
      this.store.putCluster(c);
    });
  }

  // ---- join and certificates ----

  async join(r: JoinRequest): Promise<JoinResult> {
    const tok = parseToken(r.token);
    const c = this.cluster();
    if (!secretsEqual(tok.caDigest, this.caDigest)) throw new InvalidArgumentError('invalid join token: it was issued for another swarm (CA digest mismatch)');
    let role: Role | undefined;
    // Compare against both secrets every time, so timing says nothing about which matched.
    const isWorker = secretsEqual(tok.secret, c.workerSecret);
    const isManager = secretsEqual(tok.secret, c.managerSecret);
    if (isManager) role = 'manager';
    else if (isWorker) role = 'worker';
    if (!role) throw new ForbiddenError('invalid join token');
    if (typeof r.hostname !== 'string' || r.hostname.length === 0 || r.hostname.length > 253) throw new InvalidArgumentError('invalid hostname');
    parseIp(r.addr);
    const port = r.managerPort ?? 2377;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`invalid manager port ${port}`);
    const id = newId();
    const certPem = await this.ca.sign(r.csrPem, id, role, c.id, c.certDays, managerIps(role, r.addr));
    const t = now();
    await this.store.tx(() => {
      this.store.putNode({
        ...(role === 'manager' ? { managerCerts: [certInfo(certPem).serial] } : {}),
        id,
        hostname: r.hostname,
        role,
        availability: r.availability ?? 'active',
        addr: r.addr,
        // Kept for workers too: where a promoted node will serve raft.
        managerAddr: `${r.addr}:${port}`,
        state: 'unknown',
        message: '',
        engineVersion: r.engineVersion,
        ...(r.resources ? { resources: r.resources } : {}),
        tunnelIp: nextTunnelIp(this.store.listNodes()),
        labels: {},
        version: this.store.bump(),
        createdAt: t,
        updatedAt: t,
      });
    });
    this.log.info('node joined', { node: id, hostname: r.hostname, role });
    return { nodeId: id, role, certPem, caPem: this.ca.certPem, clusterId: c.id };
  }

  /** Issues a fresh certificate to a known node (renewal); the role comes from the store. */
  async renew(nodeId: string, csrPem: string): Promise<string> {
    const n = this.mustNode(nodeId);
    const pem = await this.ca.sign(csrPem, n.id, n.role, this.cluster().id, this.cluster().certDays, managerIps(n.role, n.addr));
    // A manager certificate is remembered, so a demotion can revoke it.
    if (n.role === 'manager')
      await this.store.tx(() => {
        const cur = this.mustNode(nodeId);
        cur.managerCerts = [...(cur.managerCerts ?? []), certInfo(pem).serial].slice(-MAX_MANAGER_CERTS);
        this.store.putNode(cur);
      });
    return pem;
  }

  /** A demoted node's manager certificates go into the CRL the managers' etcd members check. */
  private revokeManagerCerts(n: NodeRecord): void {
    if (!n.managerCerts?.length) return;
    const c = this.cluster();
    c.revokedCerts = [...new Set([...(c.revokedCerts ?? []), ...n.managerCerts])].slice(-MAX_REVOKED_CERTS);
    c.updatedAt = now();
    this.store.putCluster(c);
    n.managerCerts = [];
  }

  // ---- nodes ----

  listNodes(): NodeRecord[] {
    return this.store.listNodes();
  }

  /** By full ID, unique ID prefix, or hostname (as docker node inspect resolves). */
  findNode(ref: string): NodeRecord {
    const all = this.store.listNodes();
    const exact = all.find((n) => n.id === ref);
    if (exact) return exact;
    const byPrefix = ref.length > 0 ? all.filter((n) => n.id.startsWith(ref)) : [];
    if (byPrefix.length === 1) return byPrefix[0]!;
    if (byPrefix.length > 1) throw new ConflictError(`node ${ref} is ambiguous (${byPrefix.length} matches found)`);
    const byName = all.filter((n) => n.hostname === ref);
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1) throw new ConflictError(`node ${ref} is ambiguous (${byName.length} matches found)`);
    throw new NotFoundError(`node ${ref} not found`);
  }

  private mustNode(id: string): NodeRecord {
    const n = this.store.getNode(id);
    if (!n) throw new NotFoundError(`node ${id} not found`);
    return n;
  }

  /** Set by the control plane: throws if taking this manager out of etcd would lose the quorum. */
  quorumGuard: ((nodeId: string) => void) | undefined;
  /** Set by the control plane: a demotion answers once etcd's membership follows and has a leader again. */
  demoted: ((nodeId: string) => Promise<void>) | undefined;

  async updateNode(
    ref: string,
    version: number | undefined,
    spec: { availability?: string; role?: string; labels?: Record<string, string> },
  ): Promise<NodeRecord> {
    let roleChanged = false;
    const out = await this.store.tx(() => {
      const n = this.findNode(ref);
      if (version !== undefined && version !== n.version)
        throw new ConflictError(`update out of sequence: node ${n.id} is at version ${n.version}, not ${version}`);
      if (spec.availability !== undefined) {
        if (!['active', 'pause', 'drain'].includes(spec.availability))
          throw new InvalidArgumentError(`invalid availability "${spec.availability}": active, pause or drain`);
        n.availability = spec.availability as Availability;
      }
      if (spec.role !== undefined && spec.role !== n.role) {
        if (!['manager', 'worker'].includes(spec.role)) throw new InvalidArgumentError(`invalid role "${spec.role}": manager or worker`);
        // The role lives in the store; the node learns it over its session, swaps its certificate,
        // and starts or stops its raft member. Raft's membership follows once this commits.
        if (spec.role === 'worker') {
          const managers = this.store.listNodes().filter((x) => x.role === 'manager');
          if (managers.length <= 1) throw new ForbiddenError(`attempting to demote the last manager of the swarm`);
          this.quorumGuard?.(n.id);
          this.revokeManagerCerts(n);
        } else if (!n.managerAddr) n.managerAddr = `${n.addr}:2377`;
        n.role = spec.role as NodeRecord['role'];
        roleChanged = true;
      }
      if (spec.labels !== undefined) n.labels = { ...spec.labels };
      n.updatedAt = now();
      n.version = this.store.bump();
      this.store.putNode(n);
      return n;
    });
    if (roleChanged) {
      this.log.info('node role changed', { node: out.id, role: out.role });
      if (out.role === 'worker') await this.demoted?.(out.id);
    }
    return out;
  }

  async removeNode(ref: string, force: boolean): Promise<void> {
    await this.store.tx(() => {
      const n = this.findNode(ref);
      if (n.id === this.selfId || n.role === 'manager')
        throw new ForbiddenError(`node ${n.id} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal`);
      if (n.state === 'ready' && !force) throw new ForbiddenError(`node ${n.id} is not down and can't be removed`);
      for (const a of this.store.listAttachments({ nodeId: n.id })) this.releaseTx(a);
      this.store.deleteNode(n.id);
      this.store.bump();
    });
  }

  /**
   * A node's WireGuard public key, as it sent it (at each session start, and after a rotation).
   * A node from before tunnels existed gets its address now.
   */
  async setWireguardKey(nodeId: string, publicKey: unknown): Promise<NodeRecord> {
    if (!isWgKey(publicKey)) throw new InvalidArgumentError('invalid WireGuard public key: expected 32 bytes in base64');
    return this.store.tx(() => {
      const n = this.mustNode(nodeId);
      if (n.wgPublicKey === publicKey && n.tunnelIp) return n;
      const next: NodeRecord = {
        ...n,
        wgPublicKey: publicKey,
        tunnelIp: n.tunnelIp ?? nextTunnelIp(this.store.listNodes()),
        updatedAt: now(),
        version: this.store.bump(),
      };
      this.store.putNode(next);
      return next;
    });
  }

  // ---- configs ----

  createConfig(req: ConfigCreate): Promise<ConfigRecord> {
    return this.store.tx(() => createConfigTx(this.store, req));
  }
  listConfigs(): ConfigRecord[] {
    return this.store.listConfigs();
  }
  findConfig(ref: string): ConfigRecord {
    return findConfig(this.store, ref);
  }
  removeConfig(ref: string): Promise<ConfigRecord> {
    return this.store.tx(() => removeConfigTx(this.store, ref));
  }
  updateConfig(ref: string, version: number | undefined, next: ConfigCreate): Promise<ConfigRecord> {
    return this.store.tx(() => updateConfigTx(this.store, ref, version, next));
  }

  // ---- liveness (the leader's) ----

  /** nodes without a session key: when they are marked down, and whether a session just ended */
  private readonly absent = new Map<string, { at: number; closed: boolean }>();

  private readonly onChange = (changes: StoreChange[]): void => {
    let look = false;
    for (const c of changes) {
      if (c.coll === 'sessions' && c.deleted) this.absent.set(c.id, { at: 0, closed: true });
      if (c.coll === 'sessions' || c.coll === 'nodes') look = true;
    }
    if (look) this.checkSessions();
  };

  /**
   * A node with a session key is ready. One whose key went (its session closed: its daemon died,
   * or its manager did and the lease ran out) is down at once; one never seen with a session (just
   * joined, or unknown after a leader change) gets the grace period first.
   */
  private checkSessions(): void {
    if (this.closing) return;
    const t = Date.now();
    for (const n of this.store.listNodes()) {
      const sess = this.store.getSession(n.id);
      // A goodbye's key counts until its grace ends (its dispatcher deletes it then).
      const bye = sess?.goodbyeUntil ? Date.parse(sess.goodbyeUntil) : Infinity;
      if (sess && t >= bye) this.absent.set(n.id, { at: 0, closed: true });
      if (n.id === this.selfId || (sess && t < bye)) {
        this.absent.delete(n.id);
        if (n.state !== 'ready' && !this.marking.has(n.id)) this.mark(n.id, 'ready', '');
        continue;
      }
      let a = this.absent.get(n.id);
      if (!a) this.absent.set(n.id, (a = { at: t + TAKEOVER_GRACE_MS, closed: false }));
      if (t >= a.at && n.state !== 'down' && !this.marking.has(n.id))
        this.mark(n.id, 'down', a.closed ? 'heartbeat failure: session closed' : 'heartbeat failure');
    }
    for (const id of this.absent.keys()) if (!this.store.getNode(id)) this.absent.delete(id);
  }

  /** nodes whose state write is in flight */
  private readonly marking = new Set<string>();

  /** Writes a node's liveness in the background (the session or timer that saw it goes on). */
  private mark(nodeId: string, state: NodeRecord['state'], message: string): void {
    this.marking.add(nodeId);
    this.store
      .tx(() => {
        const n = this.store.getNode(nodeId);
        if (n) this.setState(n, state, message);
      })
      .catch((e: unknown) => this.log.warn('could not record a node state', { node: nodeId, state, error: (e as Error).message }))
      .finally(() => this.marking.delete(nodeId));
  }

  private setState(n: NodeRecord, state: NodeRecord['state'], message: string): void {
    if (n.state === state && n.message === message) return;
    n.state = state;
    n.message = message;
    n.updatedAt = now();
    n.version = this.store.bump();
    this.store.putNode(n);
    this.store.afterCommit(() => {
      this.emit('node-state', n);
      this.log.info('node state', { node: n.id, hostname: n.hostname, state, message });
    });
  }

  // ---- networks ----

  createNetwork(req: NetworkCreate): Promise<NetworkRecord> {
    return this.store.tx(() => this.createNetworkTx(req));
  }

  private createNetworkTx(req: NetworkCreate): NetworkRecord {
    if (typeof req.name !== 'string' || !NAME_RE.test(req.name)) {
      throw new InvalidArgumentError(`invalid network name "${req.name}": names are 1-64 characters, [a-zA-Z0-9][a-zA-Z0-9_.-]`);
    }
    if (PREDEFINED_NETWORKS.includes(req.name)) throw new ForbiddenError(`network name ${req.name} is a pre-defined network and cannot be created`);
    const driver = req.driver || 'overlay';
    if (driver !== 'overlay') throw new InvalidArgumentError(`unknown or unsupported network driver "${driver}": swarm networks use the overlay driver`);
    const same = this.store.getNetworkByName(req.name);
    if (same?.pendingDelete) throw new ConflictError(`network with name ${req.name} is still being removed: its last tasks are stopping`);
    if (same) throw new ConflictError(`network with name ${req.name} already exists`);
    const options = { ...(req.options ?? {}) };
    for (const [k, v] of Object.entries(options)) if (typeof v !== 'string') throw new InvalidArgumentError(`option ${k} must be a string`);
    // Encrypted: its VXLAN rides the nodes' WireGuard tunnel (Docker's option, any value, as dockerd).
    if (ENCRYPTED_OPTION in options && req.ingress)
      throw new InvalidArgumentError(
        'an encrypted ingress network is not supported: --opt encrypted was refused rather than leave the routing mesh unencrypted',
      );
    // any other driver option would be stored and ignored
    for (const k of Object.keys(options))
      if (k !== MTU_OPTION && k !== VXLANID_OPTION && k !== ENCRYPTED_OPTION)
        throw new InvalidArgumentError(`network option "${k}" is not supported yet: vxswarm refuses it rather than ignore it`);
    if (options[MTU_OPTION] !== undefined) {
      const mtu = Number(options[MTU_OPTION]);
      if (!/^\d+$/.test(options[MTU_OPTION]) || mtu < 68 || mtu > 65535)
        throw new InvalidArgumentError(`invalid MTU "${options[MTU_OPTION]}": must be 68..65535`);
    }
    const c = this.cluster();
    const taken = this.store.listNetworks().flatMap((n) => n.ipam.configs.map((x) => parseCidr(x.subnet)));
    const tunnels = parseCidr(TUNNEL_POOL);
    if ((req.subnets ?? []).some((r) => r.subnet !== undefined && overlaps(parseCidr(r.subnet), tunnels)))
      throw new InvalidArgumentError(`invalid pool request: ${TUNNEL_POOL} is the nodes' WireGuard tunnel range, reserved by vxswarm`);
    taken.push(tunnels);
    const configs = planSubnets(taken, req.subnets ?? [], c.defaultAddrPool, c.subnetSize);
    const vnis = planVnis(this.store.usedVnis(), configs.length, options[VXLANID_OPTION] !== undefined ? parseVniList(options[VXLANID_OPTION]) : undefined);
    options[VXLANID_OPTION] = vnis.join(',');
    const t = now();
    const rec: NetworkRecord = {
      id: newId(),
      name: req.name,
      driver: 'overlay',
      attachable: req.attachable ?? false,
      ingress: req.ingress ?? false,
      internal: req.internal ?? false,
      labels: { ...(req.labels ?? {}) },
      options,
      ipam: { driver: 'default', options: {}, configs },
      vnis,
      version: this.store.bump(),
      createdAt: t,
      updatedAt: t,
    };
    this.store.putNetwork(rec);
    for (const v of vnis) this.store.takeVni(v, rec.id);
    return rec;
  }

  /** The networks a user sees: not those being removed. */
  listNetworks(): NetworkRecord[] {
    return this.store.listNetworks().filter((n) => !n.pendingDelete);
  }

  /** By full ID, name, or unique ID prefix (Docker's lookup order). */
  findNetwork(ref: string): NetworkRecord {
    const byId = this.store.getNetwork(ref);
    if (byId && !byId.pendingDelete) return byId;
    const byName = this.store.getNetworkByName(ref);
    if (byName && !byName.pendingDelete) return byName;
    const byPrefix = ref.length > 0 ? this.listNetworks().filter((n) => n.id.startsWith(ref)) : [];
    if (byPrefix.length === 1) return byPrefix[0]!;
    if (byPrefix.length > 1) throw new ConflictError(`network ${ref} is ambiguous (${byPrefix.length} matches found on name)`);
    throw new NotFoundError(`network ${ref} not found`);
  }

  removeNetwork(ref: string): Promise<NetworkRecord> {
    return this.store.tx(() => {
      const n = this.findNetwork(ref);
      if (n.ingress) throw new ForbiddenError(`${n.name} is the ingress network and cannot be removed while this swarm uses it`);
      const users = this.store.listServices().filter((s) => s.spec.networks.some((x) => x.target === n.id));
      if (users.length) throw new ConflictError(`network ${n.name} is in use by service ${users.map((s) => s.spec.name).join(', ')}`);
      const used = this.store.listAttachments({ networkId: n.id });
      // Tasks of removed services (docker stack rm removes the services, then at once their
      // networks) hold addresses until their nodes have stopped them: the network goes after them.
      const stopping = (a: AttachmentRecord): boolean => {
        const t = a.local ? undefined : this.store.getTask(a.name);
        return !!t && (t.desiredState === 'remove' || !this.store.getService(t.serviceId));
      };
      const busy = used.filter((a) => !stopping(a));
      if (busy.length) throw new ConflictError(`network ${n.name} is in use by ${busy.length} endpoint(s) (e.g. ${busy[0]!.name})`);
      if (used.length) {
        this.store.putNetwork({ ...n, pendingDelete: true });
        this.store.bump();
        return n;
      }
      this.store.deleteNetwork(n.id);
      this.store.bump();
      return n;
    });
  }

  // ---- attachments (endpoints on overlay networks) ----

  /**
   * An address for an endpoint a node makes for itself (not a task's), as Docker's network
   * attachments for standalone containers: only on attachable networks, at most
   * MAX_LOCAL_ATTACHMENTS per node and network, released when the node no longer reports it.
   */
  attachLocal(networkRef: string, nodeId: string, name: string): Promise<{ attachment: AttachmentRecord; network: NetworkRecord }> {
    return this.store.tx(() => {
      const net = this.findNetwork(networkRef);
      if (!net.attachable) throw new ForbiddenError(`network ${net.name} is not manually attachable: create it with --attachable`);
      const held = this.store.listAttachments({ networkId: net.id, nodeId }).filter((a) => a.local).length;
      if (held >= MAX_LOCAL_ATTACHMENTS)
        throw new ConflictError(
          `node ${nodeId} already holds ${held} endpoints of its own on network ${net.name} (the limit per node is ${MAX_LOCAL_ATTACHMENTS})`,
        );
      return this.attachTx(net.id, nodeId, name, true);
    });
  }

  /** Allocates an address on the network for `name`, in a transaction of its own. */
  attach(networkRef: string, nodeId: string, name: string): Promise<{ attachment: AttachmentRecord; network: NetworkRecord }> {
    return this.store.tx(() => this.attachTx(networkRef, nodeId, name));
  }

  /** Allocates an address on the network for `name` (a task's ID when the scheduler places it); inside a transaction. */
  attachTx(networkRef: string, nodeId: string, name: string, local = false): { attachment: AttachmentRecord; network: NetworkRecord } {
    {
      const net = this.findNetwork(networkRef);
      this.mustNode(nodeId);
      if (typeof name !== 'string' || !NAME_RE.test(name)) throw new InvalidArgumentError(`invalid endpoint name "${name}"`);
      const id = newId();
      const ip = this.allocIpTx(net, id);
      const attachment: AttachmentRecord = {
        id,
        networkId: net.id,
        nodeId,
        name,
        ip: formatIp(ip),
        mac: randomMac(),
        createdAt: now(),
        ...(local ? { local } : {}),
      };
      this.store.putAttachment(attachment);
      return { attachment, network: net };
    }
  }

  /** The next free address of the network, taken for `owner` (an attachment, or a service's VIP); inside a transaction. */
  allocIpTx(net: NetworkRecord, owner: string): number {
    for (const cfg of net.ipam.configs) {
      const last = this.store.getCursor(net.id, cfg.subnet);
      const ip = nextFitIp(cfg, last, (x) => this.store.ipTaken(net.id, x));
      if (ip === undefined) continue;
      this.store.setCursor(net.id, cfg.subnet, ip);
      this.store.takeIp(net.id, ip, owner);
      return ip;
    }
    throw new ConflictError(
      `could not find an available IP address on network ${net.name}: every address of ${net.ipam.configs.map((c) => c.ipRange ?? c.subnet).join(', ')} is in use`,
    );
  }

  /** Releases an attachment; a node (`nodeId` given) may release only its own node-local ones. */
  detach(attachmentId: string, nodeId?: string): Promise<AttachmentRecord> {
    return this.store.tx(() => this.detachTx(attachmentId, nodeId));
  }

  /** detach(), inside a transaction */
  detachTx(attachmentId: string, nodeId?: string): AttachmentRecord {
    {
      const a = this.store.getAttachment(attachmentId);
      if (!a) throw new NotFoundError(`endpoint ${attachmentId} not found`);
      if (nodeId !== undefined && (a.nodeId !== nodeId || !a.local)) throw new ForbiddenError(`endpoint ${attachmentId} is not one of this node's own`);
      this.releaseTx(a);
      return a;
    }
  }

  /** A node's session started: node-local attachments it no longer has (made before `since`) are released. */
  releaseLostAttachments(nodeId: string, held: string[], since: number): Promise<number> {
    const keep = new Set(held);
    return this.store.tx(() => {
      const lost = this.store.listAttachments({ nodeId }).filter((a) => a.local && !keep.has(a.id) && Date.parse(a.createdAt) < since);
      for (const a of lost) this.releaseTx(a);
      if (lost.length) {
        this.log.info('released endpoints a node no longer has', { node: nodeId, count: lost.length });
      }
      return lost.length;
    });
  }

  private releaseTx(a: AttachmentRecord): void {
    this.store.releaseIp(a.networkId, parseIp(a.ip));
    this.store.deleteAttachment(a.id);
  }

  listAttachments(filter: { networkId?: string; nodeId?: string } = {}): AttachmentRecord[] {
    return this.store.listAttachments(filter);
  }
}
