// One vxswarm daemon: the composition root of a node. It owns the node's swarm membership
// (as manager or worker), its overlay data plane, and the test endpoints attached through
// the control plane; the Engine API in api/ calls into it.
import { createHash } from 'node:crypto';
import os from 'node:os';
import { ConflictError, InvalidArgumentError, NotFoundError, VxError, errorMessage } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { isIp } from '../core/ipv4.js';
import type { Logger } from '../core/log.js';
import { Mutex, Semaphore } from '../core/mutex.js';
import { coalesced } from '../core/coalesce.js';
import { VERSION } from '../core/version.js';
import { deleteNetns, listNetns, netnsExists, writeSysctl } from '../kernel/netns.js';
import { Rtnl } from '../kernel/rtnl.js';
import { createNetnsAsync } from '../kernel/thread.js';
import { OverlayHost } from '../overlay/host.js';
import type { EndpointSpec, NetworkSpec } from '../overlay/spec.js';
import { DEFAULT_CERT_DAYS, RootCA, certInfo, createCsr, createRootCA, renewalDelayMs } from '../cluster/manager/ca.js';
import { ControlPlane, type Active, type ControlStatus } from '../cluster/manager/control.js';
import { ENCRYPTED_OPTION, MTU_OPTION, managerIps, type Manager, type InitOptions } from '../cluster/manager/manager.js';
import { ManagerServer } from '../cluster/manager/server.js';
import { Store } from '../cluster/manager/store.js';
import { EtcdKv } from '../cluster/etcd/kv.js';
import { EtcdMember, peerUrl } from '../cluster/etcd/member.js';
import type { AttachmentRecord, NetworkRecord, NodeRecord } from '../cluster/manager/types.js';
import { ManagerClient, callManager, fetchPinnedCa, portRefuses } from '../cluster/agent/client.js';
import { LocalSession } from '../cluster/agent/local.js';
import { LoadBalancers, type LbSpec } from '../overlay/lb.js';
import { DOCKER0, GWBRIDGE, LocalBridge } from '../overlay/gwbridge.js';
import type { MeshAssignment, ServiceVipEntry, TunnelAssignment } from '../cluster/manager/dispatcher.js';
import { NodeEncryption } from './encryption.js';
import type { Tunnel } from '../overlay/tunnel.js';
import { AgentSession, type NodeSession } from '../cluster/agent/session.js';
import { MANAGER_PORT, splitHostPort } from '../cluster/wire.js';
import type { Orchestrator } from '../cluster/manager/orchestrator.js';
import { taskName, type NodeReport, type TaskRecord, type TaskStatusReport } from '../cluster/manager/types.js';
import { ContainerRuntime } from '../runtime/containers.js';
import { ImageStore } from '../runtime/images.js';
import { NodeGossip, GOSSIP_PORT, ENDPOINT_TABLE, type EndpointRecord } from './gossip.js';
import { TaskRunner, TASK_LABEL } from './tasks.js';
import { NodeMesh, meshWant } from './mesh.js';
import { TOPOLOGY_REQUEST, clusterTopology, nodeTopology, type ClusterTopology, type TopologySource } from './topology.js';
import { explainPath, type Explanation } from './explain.js';
import { EventLog } from './events.js';
import type { ContainerRecord } from '../runtime/containers.js';
import { EmbeddedDns } from '../dns/server.js';
import type { DnsRecord } from '../dns/records.js';
import fs from 'node:fs';
import path from 'node:path';
import { VolumeStore, type ContainerMount, type MountSpec } from '../runtime/volumes.js';
import { NodeDisk, type CertFiles, type LocalEndpoint, type SwarmState } from './state.js';

export interface DaemonConfig {
  root: string;
  execRoot: string;
  /** prefix of every namespace this daemon makes (sandboxes, endpoints) */
  netnsPrefix: string;
  log: Logger;
  reconcileMs?: number;
}

/** One of Docker's local networks (bridge, docker_gwbridge, host, none) on this node. */
export interface LocalNetworkInfo {
  id: string;
  name: string;
  driver: 'bridge' | 'host' | 'null';
  createdAt: string;
  subnet?: string;
  gateway?: string;
  options: Record<string, string>;
}

export interface ServiceLogLine {
  time: string;
  stream: 'stdout' | 'stderr';
  /** the line as the container wrote it */
  text: string;
  /** `<service>.<slot>.<task12>@<host>    | `, as docker prints it */
  prefix: string;
  nodeId: string;
  serviceId: string;
  taskId: string;
}
/** after a restart, how long the load balancers keep backends gossip has not brought back yet */
const LB_ADOPT_MS = 5000;
/** Lines per container a node sends for `service logs` (the manager API's bodies are bounded). */
const MAX_SERVICE_LOG_LINES = 1000;
const LOGS_TIMEOUT_MS = 3000;
/** task status reports sent to the manager at once */
const REPORTS_IN_FLIGHT = 8;
const REPORT_TIMEOUT_MS = 5000;
/** how long a restarted manager's API waits for its etcd member before it serves without it */
const MANAGER_START_WAIT_MS = 10_000;
/** networks adopted at once after a restart (each has its own netlink socket; the kernel takes them in parallel) */
const RESTORE_PARALLEL = 8;

export class NotManagerError extends VxError {
  constructor() {
    super(
      "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.",
      503,
    );
  }
}

export class NotInSwarmError extends VxError {
  constructor() {
    super('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.', 503);
  }
}

export interface InitRequest {
  listenAddr?: string;
  advertiseAddr?: string;
  dataPathPort?: number;
  defaultAddrPool?: string[];
  subnetSize?: number;
  /** on a manager of a swarm that lost its quorum: carry on alone with the state this node has */
  forceNewCluster?: boolean;
}

export interface JoinRequestLocal {
  remoteAddrs: string[];
  joinToken: string;
  advertiseAddr?: string;
  listenAddr?: string;
  availability?: string;
}

/** The store over etcd; a member that just started may need a moment before it serves reads. */
async function openStore(kv: EtcdKv, writer: string): Promise<Store> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await Store.open(kv, writer);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** A node's endpoint as its overlay plumbs it; a task's (and the mesh sandbox's) way out is a bridge, never an overlay. */
function overlayEndpoint(ep: LocalEndpoint): EndpointSpec {
  return { id: ep.id, netns: ep.netns, ip: ep.ip, mac: ep.mac, ...(ep.ifname ? { ifname: ep.ifname } : {}), defaultRoute: !ep.taskId && !ep.sbox };
}

export function overlaySpec(n: NetworkRecord): NetworkSpec {
  const mtu = n.options[MTU_OPTION] !== undefined ? Number(n.options[MTU_OPTION]) : undefined;
  return {
    id: n.id,
    subnets: n.ipam.configs.map((c, i) => ({ subnet: c.subnet, gateway: c.gateway, vni: n.vnis[i]! })),
    ...(mtu ? { mtu } : {}),
    ...(ENCRYPTED_OPTION in n.options ? { encrypted: true } : {}),
  };
}

export class Daemon {
  readonly disk: NodeDisk;
  private state: SwarmState | undefined;
  /** on a manager node: the replicated store and raft member */
  control: ControlPlane | undefined;
  private server: ManagerServer | undefined;
  private client: ManagerClient | undefined;
  private session: NodeSession | undefined;
  private overlay: OverlayHost | undefined;
  private endpoints: LocalEndpoint[] = [];
  /** network records this node has seen (a worker knows only the ones it uses) */
  private readonly networks = new Map<string, NetworkRecord>();
  private renewTimer: NodeJS.Timeout | undefined;
  gossip: NodeGossip | undefined;
  private gossipStarting: Promise<void> | undefined;
  private readonly lock = new Mutex();
  readonly startedAt = new Date();
  readonly images: ImageStore;
  readonly runtime: ContainerRuntime;
  readonly volumes: VolumeStore;
  readonly tasks: TaskRunner;
  private dns: EmbeddedDns | undefined;
  readonly encryption: NodeEncryption;

  constructor(readonly cfg: DaemonConfig) {
    this.disk = new NodeDisk(cfg.root);
    this.encryption = new NodeEncryption(
      this.disk.swarmDir,
      () => this.overlay,
      (msg) => this.session?.send(msg),
      cfg.log.child({ component: 'encryption' }),
    );
    this.images = new ImageStore(path.join(cfg.root, 'images'));
    this.volumes = new VolumeStore(path.join(cfg.root, 'volumes'));
    const cgroupParent = cfg.netnsPrefix === 'vxs-' ? 'vxswarm' : cfg.netnsPrefix.replace(/-+$/, '') || 'vxswarm';
    this.lb = new LoadBalancers(cfg.log.child({ component: 'lb' }));
    this.mesh = new NodeMesh(this.sboxNetns, cfg.log.child({ component: 'mesh' }));
    this.gw = new LocalBridge(GWBRIDGE, [`${cfg.netnsPrefix}c-`, this.sboxNetns], cfg.log.child({ component: 'gwbridge' }));
    this.br = new LocalBridge(DOCKER0, [`${cfg.netnsPrefix}c-`], cfg.log.child({ component: 'bridge' }));
    this.runtime = new ContainerRuntime(path.join(cfg.root, 'containers'), cfg.execRoot, this.images, cgroupParent, cfg.log.child({ component: 'runtime' }));
    for (const [from, action] of [
      ['create', 'create'],
      ['start', 'start'],
      ['exit', 'die'],
      ['destroy', 'destroy'],
    ] as const)
      this.runtime.on(from, (c: ContainerRecord) =>
        this.events.add(
          'container',
          action,
          c.id,
          { name: c.name, image: c.image, ...c.labels, ...(action === 'die' ? { exitCode: String(c.exitCode) } : {}) },
          'local',
        ),
      );
    this.runtime.on('health', (c: ContainerRecord) =>
      this.events.add('container', `health_status: ${c.health?.status ?? 'none'}`, c.id, { name: c.name, image: c.image, ...c.labels }, 'local'),
    );
    this.tasks = new TaskRunner(
      this.runtime,
      this.images,
      {
        nodeId: () => this.state?.nodeId ?? '',
        network: (id) => this.networkRecord(id),
        attach: (t, net, ep, ns) => this.attachTaskEndpoint(t, net, ep, ns),
        detachAll: async (taskId, ns) => {
          await this.detachTask(taskId, ns);
          await fs.promises.rm(this.configDir(taskId), { recursive: true, force: true });
        },
        configFiles: (t) => this.configFiles(t),
        ensureNetns: (ns) => this.ensureTaskNetns(ns),
        report: (taskId, r) => this.reportTask(taskId, r),
        serveDns: (ns, nets) => this.resolver().add(ns, nets),
        stopDns: async (ns) => {
          await this.dns?.remove(ns);
        },
        ready: () => this.restored,
        localTaskIds: () => [...new Set(this.endpoints.flatMap((e) => (e.taskId ? [e.taskId] : [])))],
        withdraw: (taskId) => this.withdrawTask(taskId),
        serving: (taskId, ok) => this.setServing(taskId, ok),
        mounts: (specs) => Promise.all(specs.map((m) => this.mountFor(m))),
        egress: async (taskId, ns) => {
          await this.gw.attach(ns, taskId);
          this.refreshMesh();
        },
        defaultBridge: async (taskId, ns) => {
          await this.br.attach(ns, taskId);
          this.refreshMesh();
        },
      },
      cfg.netnsPrefix,
      cfg.log.child({ component: 'tasks' }),
    );
  }

  get log(): Logger {
    return this.cfg.log;
  }
  get swarm(): SwarmState | undefined {
    return this.state;
  }
  get hostname(): string {
    return os.hostname();
  }
  get sessionConnected(): boolean {
    return this.session?.connected ?? false;
  }
  /** The control loops, while this node leads the swarm. */
  get manager(): Manager | undefined {
    return this.control?.leading?.manager;
  }
  /** The cluster API this manager serves from its own store (leading or not). */
  private get api(): Active | undefined {
    const c = this.control;
    try {
      return c?.api;
    } catch {
      return undefined;
    }
  }
  /** The control plane's view (leader, cache revision, etcd members), on a manager node. */
  controlStatus(): ControlStatus | undefined {
    return this.control?.status();
  }
  /**
   * Resumes a swarm membership found on disk. Returns once the node can serve its API; its
   * sandboxes and endpoints are adopted in the background (`restored`), so a node with hundreds
   * of networks answers at once instead of after every sandbox has been read back.
   */
  async start(): Promise<void> {
    await this.runtime.restore();
    const st = this.disk.loadState();
    const certs = this.disk.loadCerts();
    if (!st || !certs) {
      this.restored = this.restoreDns();
      return;
    }
    this.state = st;
    // The load balancers its task namespaces hold are adopted; gossip refills meanwhile.
    this.lb.adoptUntil = Date.now() + LB_ADOPT_MS;
    this.mesh.sbox.adoptUntil = this.lb.adoptUntil;
    // Taken before anything can hand this node work: assignments wait for adoption.
    let adopted!: () => void;
    this.restored = new Promise((r) => (adopted = r));
    // A restarted member serves nothing until a quorum of managers is back (etcd publishes itself
    // through raft first): the node comes up now and its manager side when etcd is ready.
    if (st.role === 'manager') {
      this.controlStarting = this.resumeControl(certs);
      // As dockerd does (20 s there): the API waits a while for the manager side, then goes on
      // without it. A lone manager is back within a second; one of several waits for the others.
      await Promise.race([this.controlStarting, new Promise((r) => setTimeout(r, MANAGER_START_WAIT_MS).unref())]);
    }
    // Its manager side not up yet: a session with another manager meanwhile.
    if (!this.control) this.startAgent(certs);
    await this.startOverlay(true);
    this.scheduleRenewal(certs);
    if (this.api) await this.startGossip(this.api.manager.gossipKeys());
    // Under the node's lock: a task started meanwhile waits for its network to be adopted, and the
    // prune that follows cannot take a sandbox someone is about to use.
    void this.lock
      .lock(async () => {
        await Promise.all([this.restoreEndpoints(), this.restoreDns()]);
        await this.overlay?.pruneSandboxes();
        this.pruneContainerNamespaces();
      })
      .catch((e: unknown) => this.log.error('restoring endpoints failed', { error: errorMessage(e) }))
      .finally(adopted);
  }

  /** A restarted manager's control plane coming up in the background. */
  private controlStarting: Promise<void> | undefined;
  /** the etcd member openControl() is starting (stop() ends it) */
  private etcdStarting: EtcdMember | undefined;

  private async resumeControl(certs: CertFiles): Promise<void> {
    try {
      const control = await this.openControl(certs, 'restart');
      if (this.controlStarting === undefined || !this.state) {
        await this.closeControl(control);
        return;
      }
      await this.startControl(control, certs);
      this.log.info('manager ready');
    } catch (e) {
      if (this.controlStarting) this.log.error('the manager could not start', { error: errorMessage(e) });
      else this.log.info('the manager start was called off', { error: errorMessage(e) });
    }
  }

  /** Ends a control plane still coming up (stop, leave, role change). */
  private async abortControlStart(): Promise<void> {
    const p = this.controlStarting;
    this.controlStarting = undefined;
    await this.etcdStarting?.stop();
    await p;
  }

  /** Settles when a restart's background adoption is done (tests and benchmarks wait on it). */
  restored: Promise<void> = Promise.resolve();

  /** Running task containers keep their resolver across a daemon restart. */
  private async restoreDns(): Promise<void> {
    await Promise.all(
      this.runtime
        .list()
        .filter((c) => c.status === 'running' && c.labels[TASK_LABEL])
        .map((c) =>
          this.resolver()
            .add(
              c.netns,
              c.networks.map((n) => n.networkId),
            )
            .catch((e: unknown) => this.log.warn('could not restore DNS for a container', { container: c.id, error: errorMessage(e) })),
        ),
    );
  }

  async stop(): Promise<void> {
    await this.control?.handOver().catch((e: unknown) => this.log.warn('leadership hand-over failed', { error: errorMessage(e) }));
    this.runtime.close();
    await this.dns?.close();
    await this.abortControlStart();
    await this.stopControl();
    if (this.renewTimer) clearTimeout(this.renewTimer);
    // No leave announcement: a restart is back before long, and a crash is detected anyway.
    await this.gossip?.stop(false).catch(() => undefined);
    await this.session?.stop();
    this.client?.close();
    if (this.lbTimer) clearInterval(this.lbTimer);
    // The data plane stays: endpoints keep working across a daemon restart and are re-adopted.
    await this.overlay?.close({ keepKernelState: true });
    await this.saving;
  }

  // ---- swarm membership ----

  init(req: InitRequest): Promise<string> {
    return this.lock.lock(async () => {
      if (this.state && req.forceNewCluster) {
        if (!this.control) throw new ConflictError('--force-new-cluster can only be used on a manager: this node is a worker');
        await this.forceNewCluster();
        return this.state.nodeId;
      }
      if (this.state) throw new ConflictError('This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.');
      const advertise = await this.resolveAdvertise(req.advertiseAddr);
      const listen = req.listenAddr || `0.0.0.0:${MANAGER_PORT}`;
      const { port } = splitHostPort(listen);
      const nodeId = newId();
      const clusterId = newId();
      const managerAddr = `${advertise}:${port}`;
      // The CA first: this manager's etcd speaks TLS with a certificate from it before any state exists.
      const ca = await createRootCA();
      const { csrPem, keyPem } = await createCsr();
      const certPem = await (await RootCA.load(ca)).sign(csrPem, nodeId, 'manager', clusterId, DEFAULT_CERT_DAYS, managerIps('manager', advertise));
      const certs: CertFiles = { caPem: ca.certPem, certPem, keyPem };
      this.state = { nodeId, clusterId, role: 'manager', managerAddr, advertiseAddr: advertise, listenAddr: listen, dataPathPort: 4789 };
      let control: ControlPlane | undefined;
      try {
        control = await this.openControl(certs, 'new', false, await (await RootCA.load(ca)).crl([]));
        const opts: InitOptions = {
          nodeId,
          clusterId,
          hostname: this.hostname,
          advertiseAddr: advertise,
          managerAddr,
          engineVersion: VERSION,
          resources: machineResources(),
          ca,
          certSerial: certInfo(certPem).serial,
        };
        if (req.defaultAddrPool?.length) opts.defaultAddrPool = req.defaultAddrPool;
        if (req.subnetSize) opts.subnetSize = req.subnetSize;
        if (req.dataPathPort) opts.dataPathPort = req.dataPathPort;
        const manager = await control.init(opts);
        this.state.dataPathPort = manager.cluster().dataPathPort;
        await this.startControl(control, certs);
        await this.startOverlay();
        await this.startGossip(manager.gossipKeys());
      } catch (e) {
        if (!this.control && control) await this.closeControl(control);
        await this.teardownSwarm();
        this.disk.wipeSwarm();
        throw e;
      }
      this.disk.saveCerts(certs);
      this.disk.saveState(this.state);
      this.scheduleRenewal(certs);
      return nodeId;
    });
  }

  join(req: JoinRequestLocal): Promise<void> {
    return this.lock.lock(async () => {
      if (this.state) throw new ConflictError('This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.');
      const remote = req.remoteAddrs?.[0];
      if (!remote) throw new InvalidArgumentError('at least 1 RemoteAddr is required to join');
      const { host, port } = splitHostPort(remote);
      if (!isIp(host) || port < 1 || port > 65535) throw new InvalidArgumentError(`invalid remote address "${remote}": expected IP:port`);
      const caPem = await fetchPinnedCa(remote, req.joinToken);
      const bootstrap = new ManagerClient(req.remoteAddrs, { caPem });
      const listen = req.listenAddr || `0.0.0.0:${MANAGER_PORT}`;
      try {
        const session = await bootstrap.open();
        const advertise = req.advertiseAddr
          ? await this.resolveAdvertise(req.advertiseAddr)
          : (session.socket.localAddress ?? (await this.resolveAdvertise(undefined)));
        const { csrPem, keyPem } = await createCsr();
        const r = await bootstrap.request<{ nodeId: string; role: 'manager' | 'worker'; certPem: string; caPem: string; clusterId: string }>(
          'POST',
          '/v1/join',
          {
            token: req.joinToken,
            csr: csrPem,
            hostname: this.hostname,
            addr: advertise,
            availability: req.availability || 'active',
            engineVersion: VERSION,
            resources: machineResources(),
            managerPort: splitHostPort(listen).port,
          },
        );
        const certs: CertFiles = { caPem: r.caPem, certPem: r.certPem, keyPem };
        this.state = {
          nodeId: r.nodeId,
          clusterId: r.clusterId,
          role: r.role,
          managerAddr: bootstrap.addr,
          managers: bootstrap.managers,
          advertiseAddr: advertise,
          listenAddr: listen,
          dataPathPort: 4789,
        };
        this.disk.saveCerts(certs);
        this.disk.saveState(this.state);
        // A joining manager's etcd starts as a learner and catches up from the others; its node's
        // session is then with its own manager.
        // Until its etcd member has caught up, a joining manager's node has a session with another
        // manager (it is up, not absent); then its own dispatcher serves it.
        this.startAgent(certs);
        if (r.role === 'manager') await this.startControl(await this.openControl(certs, 'join'), certs);
        await this.startOverlay();
        this.scheduleRenewal(certs);
        await this.waitConnected(5000);
      } finally {
        bootstrap.close();
      }
    });
  }

  async leave(force: boolean): Promise<void> {
    const check = (): void => {
      if (!this.state) throw new VxError('This node is not part of a swarm', 503);
      if (this.state.role === 'manager' && !force) {
        const managers = this.control?.members().length ?? 1;
        throw new VxError(
          managers <= 1
            ? 'You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.'
            : `You are attempting to leave the swarm on a node that is participating as a manager. Removing this node leaves ${managers - 1} managers out of ${managers}. Without a Raft quorum your swarm will be inaccessible. The only way to restore a swarm that has lost consensus is to reinitialize it with \`--force-new-cluster\`. Use \`--force\` to suppress this message.`,
          503,
        );
      }
    };
    await this.lock.lock(async () => check());
    // The tasks go first, without the node's lock: taking a task's endpoints down takes it (holding
    // it here is what made `swarm leave` on a worker with a task hang for good). No new work comes in.
    this.leaving = true;
    try {
      await this.session?.stop();
      await this.tasks.apply([]).catch((e: unknown) => this.log.warn('task cleanup failed', { error: errorMessage(e) }));
      await this.lock.lock(async () => {
        check();
        for (const ep of [...this.endpoints])
          await this.removeEndpointLocked(ep, true).catch((e: unknown) => this.log.warn('endpoint cleanup on leave failed', { error: errorMessage(e) }));
        // The node publishes nothing once out of the swarm.
        this.meshAssignment = undefined;
        await this.mesh.node.remove('').catch((e: unknown) => this.log.warn('could not remove the published ports', { error: errorMessage(e) }));
        // A manager leaves etcd first: the others stop counting it for their quorum at once.
        await this.control?.leaveMembers().catch((e: unknown) => this.log.warn('could not leave etcd', { error: errorMessage(e) }));
        await this.control?.handOver().catch(() => undefined);
        await this.teardownSwarm();
        this.disk.wipeSwarm();
      });
    } finally {
      this.leaving = false;
    }
  }
  /** set while leaving: assignments are no longer taken */
  private leaving = false;

  private async teardownSwarm(): Promise<void> {
    if (this.renewTimer) clearTimeout(this.renewTimer);
    await this.abortControlStart();
    await this.stopControl();
    await this.tasks.apply([]).catch((e: unknown) => this.log.warn('task cleanup failed', { error: errorMessage(e) }));
    await this.gossip?.stop(true).catch(() => undefined);
    this.gossip = undefined;
    this.gossipStarting = undefined;
    await this.session?.stop();
    this.session = undefined;
    this.client?.close();
    this.client = undefined;
    if (this.lbTimer) clearInterval(this.lbTimer);
    await this.overlay?.close();
    this.overlay = undefined;
    this.networks.clear();
    this.endpoints = [];
    this.state = undefined;
  }

  /** Gossip on <advertise>:7946; workers join through the manager's address. */
  private startGossip(keys: string[]): Promise<void> {
    this.gossipStarting ??= (async () => {
      const st = this.state!;
      this.gossip = await NodeGossip.start({
        ip: st.advertiseAddr,
        nodeId: st.nodeId,
        hostname: this.hostname,
        keys,
        seeds: () => this.gossipSeeds(),
        onPeers: (nid, peers) => {
          if (this.overlay?.hasNetwork(nid))
            void this.overlay.setPeers(nid, peers).catch((e: unknown) => this.log.error('programming peers failed', { network: nid, error: errorMessage(e) }));
        },
        log: this.log.child({ component: 'gossip' }),
      });
      this.gossip.db.on('event', (e: { table: string }) => {
        if (e.table === ENDPOINT_TABLE) this.refreshDns();
      });
      // Gossip tells a dead leader within a few hundred ms: the managers need not wait for its lease.
      this.gossip.ml.on('dead', (m: { name: string }) => void this.control?.holderGone(m.name, 'gossip'));
      // A peer's topology page or `explain path` asks for what our kernel holds.
      this.gossip.db.onRequest = (_from, d) => ((d as { k?: string } | null)?.k === TOPOLOGY_REQUEST ? nodeTopology(this.topologySource) : null);
      for (const ep of this.endpoints) this.publish(ep);
    })();
    return this.gossipStarting;
  }

  /** What the topology page and `explain path` read: this node's kernel, its containers and gossip. */
  readonly topologySource: TopologySource = {
    node: () => {
      if (!this.state) return undefined;
      const tunnelIp = this.overlay?.tunnelIfAny?.ip;
      return { id: this.state.nodeId, hostname: this.hostname, role: this.state.role, addr: this.state.advertiseAddr, ...(tunnelIp ? { tunnelIp } : {}) };
    },
    underlay: async () => this.overlay?.underlay().catch(() => undefined),
    networks: () => (this.overlay?.listNetworks() ?? []).map((n) => ({ id: n.id, name: this.networks.get(n.id)?.name ?? n.id, view: () => n.view() })),
    containers: () =>
      this.runtime.list().map((c) => ({
        id: c.id,
        name: c.name,
        netns: c.netns,
        status: c.status,
        ...(c.labels['com.docker.swarm.service.name'] ? { service: c.labels['com.docker.swarm.service.name'] } : {}),
        ...(c.labels[TASK_LABEL] ? { taskId: c.labels[TASK_LABEL] } : {}),
      })),
    mesh: () => ({
      sboxNetns: this.sboxNetns,
      node: Object.fromEntries(this.mesh.node.spec('') ?? []),
      sbox: Object.fromEntries(this.mesh.sbox.spec(this.sboxNetns) ?? []),
    }),
    gossip: () => this.gossip,
  };

  /** Every node's overlay as its kernel holds it (ours read here, the others asked over gossip). */
  clusterTopology(): Promise<ClusterTopology> {
    return clusterTopology(this.topologySource);
  }

  /** `vxswarm explain path`: the hops from a container here to an address or name, from every node's kernel. */
  async explain(container: string, target: string): Promise<Explanation> {
    return explainPath({
      topology: await this.clusterTopology(),
      container: this.runtime.find(container)?.id ?? container,
      target,
      resolve: (name, nets) => this.resolveName(name, nets),
      vips: (netns) => this.lb.spec(netns),
    });
  }

  /** A name as a task's resolver answers it: a service (its VIP, or a task in dnsrr), tasks.<service>, a task or container name, an alias. */
  private resolveName(name: string, networkIds: string[]): string | undefined {
    const vip = this.vips.find((v) => networkIds.includes(v.networkId) && (v.service === name || v.aliases?.includes(name)));
    if (vip) return vip.ip;
    const svc = name.startsWith('tasks.') ? name.slice(6) : undefined;
    for (const nid of networkIds)
      for (const e of this.gossip?.db.list(ENDPOINT_TABLE, nid) ?? []) {
        const v = e.value as EndpointRecord | undefined;
        if (!v || typeof v.ip !== 'string') continue;
        if (v.name === name || v.aliases?.includes(name) || (v.service && (v.service === name || v.service === svc))) return v.ip;
      }
    return undefined;
  }

  /** The embedded DNS server, started with the first container that needs it. */
  private resolver(): EmbeddedDns {
    if (!this.dns) {
      this.dns = new EmbeddedDns(this.log.child({ component: 'dns' }));
      this.refreshDns();
    }
    return this.dns;
  }

  /** the VIPs of the services on this node's networks, from its manager */
  private vips: ServiceVipEntry[] = [];

  private setVips(vips: ServiceVipEntry[]): void {
    const first = !this.vipsKnown;
    this.vipsKnown = true;
    if (!first && JSON.stringify(vips) === JSON.stringify(this.vips)) return;
    this.vips = vips;
    this.refreshDns();
    this.refreshLb();
  }

  /** Pushes the endpoint tables of this node's networks, and its services' VIPs, to the resolver (coalesced). */
  private refreshDns(): void {
    this.refreshLb();
    this.refreshMesh();
    if (this.dns) this.dnsSoon();
  }
  private readonly dnsSoon = coalesced(() => {
    const g = this.gossip;
    const records: DnsRecord[] = [];
    const overlays = [...this.networks.values()].flatMap((n) => n.ipam.configs.map((c) => c.subnet));
    for (const n of this.networks.values()) {
      // ingress carries the mesh, not names (as Docker's).
      if (n.ingress || !g?.db.inNetwork(n.id)) continue;
      for (const e of g.db.list(ENDPOINT_TABLE, n.id)) {
        const v = e.value as EndpointRecord | undefined;
        if (!v || typeof v.ip !== 'string' || typeof v.name !== 'string') continue;
        records.push({
          networkId: n.id,
          networkName: n.name,
          ip: v.ip,
          name: v.name,
          ...(v.service ? { service: v.service } : {}),
          ...(v.aliases ? { aliases: v.aliases } : {}),
        });
      }
    }
    for (const v of this.vips) {
      const n = this.networks.get(v.networkId);
      if (n)
        records.push({
          networkId: n.id,
          networkName: n.name,
          ip: v.ip,
          name: v.service,
          service: v.service,
          ...(v.aliases ? { aliases: v.aliases } : {}),
          vip: true,
        });
    }
    void this.dns?.setRecords(records, overlays).catch((e: unknown) => this.log.warn('DNS records update failed', { error: errorMessage(e) }));
  });

  /**
   * The services of a network as this node sees them: each one's VIP (from its manager) and its
   * tasks (from the gossip endpoint table), with the underlay address of the node that runs each.
   */
  networkServices(networkId: string): { service: string; vip?: string; tasks: { name: string; endpointId: string; ip: string; hostIp: string }[] }[] {
    const g = this.gossip;
    const out = new Map<string, { service: string; vip?: string; tasks: { name: string; endpointId: string; ip: string; hostIp: string }[] }>();
    const entry = (svc: string): NonNullable<ReturnType<typeof out.get>> => {
      let e = out.get(svc);
      if (!e) out.set(svc, (e = { service: svc, tasks: [] }));
      return e;
    };
    for (const v of this.vips) if (v.networkId === networkId) entry(v.service).vip = v.ip;
    if (g?.db.inNetwork(networkId))
      for (const e of g.db.list(ENDPOINT_TABLE, networkId)) {
        const v = e.value as EndpointRecord | undefined;
        if (!v?.service) continue;
        const host = e.owner === this.state?.nodeId ? this.state.advertiseAddr : (g.ml.get(e.owner)?.addr ?? '').replace(/:\d+$/, '');
        entry(v.service).tasks.push({ name: v.name, endpointId: e.key, ip: v.ip, hostIp: host });
      }
    return [...out.values()];
  }

  /** tasks told to stop whose endpoints are still plumbed: out of DNS and every load balancer */
  private readonly withdrawn = new Set<string>();

  /** tasks whose health check has not passed yet, or has failed: reachable, but out of their services' backends and DNS */
  private readonly unready = new Set<string>();

  /** configs' data as the manager sent it with the assignments (only those this node's tasks name) */
  private readonly configData = new Map<string, string>();
  private configDir(taskId: string): string {
    return path.join(this.cfg.execRoot, 'configs', taskId);
  }

  /** Each config a file under the exec root (tmpfs: never on disk), mounted read-only where the spec says. */
  private async configFiles(t: TaskRecord): Promise<ContainerMount[]> {
    const refs = t.spec.configs ?? [];
    if (!refs.length) return [];
    const dir = this.configDir(t.id);
    await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
    return Promise.all(
      refs.map(async (r, i) => {
        const data = this.configData.get(r.configId);
        if (data === undefined) throw new NotFoundError(`config ${r.configName} (${r.configId}) was not sent to this node`);
        const file = path.join(dir, `${i}-${r.configId}`);
        await fs.promises.writeFile(file, Buffer.from(data, 'base64'), { mode: r.mode });
        await fs.promises.chmod(file, r.mode);
        await fs.promises.chown(file, Number(r.uid) || 0, Number(r.gid) || 0);
        return { type: 'bind' as const, source: file, destination: r.target, readOnly: true };
      }),
    );
  }

  /** A task's mount on this node: a tmpfs, a bind whose source must exist, or a volume (made on demand). */
  private async mountFor(m: MountSpec): Promise<ContainerMount> {
    if (m.type === 'tmpfs')
      return {
        type: 'tmpfs',
        source: '',
        destination: m.target,
        readOnly: m.readOnly,
        options: [...(m.tmpfsSize ? [`size=${m.tmpfsSize}`] : []), ...(m.tmpfsMode ? [`mode=${m.tmpfsMode.toString(8)}`] : [])],
      };
    if (m.type === 'bind') {
      await fs.promises.access(m.source).catch(() => {
        throw new InvalidArgumentError(`invalid mount config for type "bind": bind source path does not exist: ${m.source}`);
      });
      return { type: 'bind', source: m.source, destination: m.target, readOnly: m.readOnly };
    }
    const { volume, created } = await this.volumes.create({ ...(m.source ? { name: m.source } : {}), ...(m.volumeLabels ? { labels: m.volumeLabels } : {}) });
    return {
      type: 'volume',
      name: volume.name,
      source: this.volumes.dataPath(volume.name),
      destination: m.target,
      readOnly: m.readOnly,
      copyUp: created && !m.noCopy,
    };
  }

  /** The containers using a volume (any state, as Docker counts them). */
  volumeUsers(name: string): string[] {
    return this.runtime
      .list()
      .filter((c) => c.mounts?.some((m) => m.type === 'volume' && m.name === name))
      .map((c) => c.id);
  }

  /** tasks whose endpoint-table entries publish() left out (not ready, or a container not healthy) */
  private readonly withheld = new Set<string>();

  private setServing(taskId: string, ok: boolean): void {
    if (ok ? !this.unready.delete(taskId) && !this.withheld.has(taskId) : this.unready.has(taskId)) return;
    if (!ok) this.unready.add(taskId);
    for (const ep of this.endpoints) if (ep.taskId === taskId) this.publish(ep);
  }

  /**
   * A task serves unless it is marked not ready or its container has a health check that has not
   * passed: after a restart the saved health decides from the first publish, before the task
   * runner's first pass.
   */
  private serving(taskId: string | undefined): boolean {
    if (!taskId) return true;
    if (this.unready.has(taskId)) return false;
    const c = this.runtime.list().find((x) => x.labels[TASK_LABEL] === taskId);
    return !c?.healthcheck || c.status !== 'running' || c.health?.status === 'healthy';
  }

  private withdrawTask(taskId: string): void {
    this.withdrawn.add(taskId);
    for (const ep of this.endpoints) if (ep.taskId === taskId) this.gossip?.withdraw(ep.networkId, ep.id);
    this.refreshDns();
  }

  /**
   * Every local task namespace balances the VIPs of the services on its networks over their tasks
   * as the gossip endpoint tables list them (coalesced; the manager is not asked).
   */
  private refreshLb(): void {
    // Not before the manager has said which VIPs there are: a restarted node keeps what its
    // namespaces hold until then.
    if (this.vipsKnown) this.lbSoon();
  }
  private readonly lbSoon = coalesced(() => {
    const g = this.gossip;
    const byNetns = new Map<string, Set<string>>();
    for (const ep of this.endpoints) if (ep.taskId) byNetns.set(ep.netns, (byNetns.get(ep.netns) ?? new Set()).add(ep.networkId));
    // Each network's table read once per refresh, not once per VIP and namespace.
    const byNetwork = new Map<string, Map<string, string[]>>();
    const backends = (networkId: string, service: string): string[] => {
      let svcs = byNetwork.get(networkId);
      if (!svcs) {
        svcs = new Map();
        for (const e of g?.db.inNetwork(networkId) ? g.db.list(ENDPOINT_TABLE, networkId) : []) {
          const v = e.value as EndpointRecord | undefined;
          if (v?.service && typeof v.ip === 'string') svcs.set(v.service, [...(svcs.get(v.service) ?? []), v.ip]);
        }
        for (const [k, ips] of svcs) svcs.set(k, [...new Set(ips)].sort());
        byNetwork.set(networkId, svcs);
      }
      return svcs.get(service) ?? [];
    };
    for (const [netns, nets] of byNetns) {
      const want: LbSpec = new Map();
      for (const v of this.vips) if (nets.has(v.networkId)) want.set(v.ip, backends(v.networkId, v.service));
      void this.lb.set(netns, want).catch((e: unknown) => this.log.warn('programming a load balancer failed', { netns, error: errorMessage(e) }));
    }
  });
  private vipsKnown = false;

  // ---- the routing mesh and host-mode ports ----

  get sboxNetns(): string {
    return `${this.cfg.netnsPrefix}ingress_sbox`;
  }
  private readonly mesh: NodeMesh;
  private meshAssignment: MeshAssignment | undefined;
  /** the mesh sandbox's address on docker_gwbridge, once it is up */
  private sboxGw: string | undefined;

  private setMesh(m: MeshAssignment): void {
    this.meshAssignment = m;
    const have = this.endpoints.find((e) => e.sbox);
    if (m.sbox && (!have || have.id !== m.sbox.id || !this.sboxGw)) {
      const want = m.sbox;
      void this.ensureSbox(want).catch((e: unknown) =>
        this.log.error('the ingress sandbox could not be set up: published ports do not work here', { error: errorMessage(e) }),
      );
    }
    this.refreshMesh();
  }

  /** The node's ingress sandbox: an endpoint on ingress and a leg on docker_gwbridge, forwarding between them. */
  private async ensureSbox(a: NonNullable<MeshAssignment['sbox']>): Promise<void> {
    // After a restart the sandbox is adopted with the other endpoints first.
    await this.restored;
    return this.lock.lock(async () => {
      if (!this.state || !this.overlay) return;
      const ingress = [...this.networks.values()].find((n) => n.ingress);
      if (!ingress) return;
      const old = this.endpoints.find((e) => e.sbox);
      if (old && old.id !== a.id) await this.removeEndpointLocked(old, true);
      if (!this.endpoints.some((e) => e.sbox && e.id === a.id))
        await this.plumbLocked(ingress, {
          id: a.id,
          name: 'ingress-endpoint',
          networkId: ingress.id,
          networkName: ingress.name,
          ip: a.ip,
          mac: a.mac,
          netns: this.sboxNetns,
          ifname: 'eth0',
          sbox: true,
        });
      await this.gw.start();
      this.sboxGw = this.gw.addressOf(this.sboxNetns) ?? (await this.gw.attach(this.sboxNetns, 'ingress_sbox'));
      writeSysctl(this.sboxNetns, 'net.ipv4.ip_forward', '1');
      this.refreshMesh();
    });
  }

  /** Programs the node's published ports, its sandbox and its ingress tasks' replies (coalesced). */
  private refreshMesh(): void {
    if (this.meshAssignment) this.meshSoon();
  }
  private readonly meshSoon = coalesced(() => {
    const ingress = [...this.networks.values()].find((n) => n.ingress);
    const g = this.gossip;
    const records =
      ingress && g?.db.inNetwork(ingress.id)
        ? g.db.list(ENDPOINT_TABLE, ingress.id).flatMap((e) => {
            const v = e.value as EndpointRecord | undefined;
            return v && typeof v.ip === 'string' ? [v] : [];
          })
        : [];
    const hostTasks = this.tasks.hostPortTasks().flatMap((t) => {
      const ip = this.gw.addressOf(t.netns) ?? this.br.addressOf(t.netns);
      return ip ? [{ ip, ports: t.ports }] : [];
    });
    const want = meshWant({ ports: this.meshAssignment?.ports ?? [], ...(this.sboxGw ? { sboxGw: this.sboxGw } : {}), ingress: records, hostTasks });
    const legs = this.endpoints.filter((e) => e.taskId && e.networkId === ingress?.id).map((e) => ({ netns: e.netns, ifname: e.ifname ?? 'eth0' }));
    this.mesh.apply(want, !!this.sboxGw, legs);
  });

  meshStats(): Record<string, number> {
    return this.mesh.stats();
  }
  readonly lb: LoadBalancers;
  /** docker_gwbridge (tasks on overlays) and docker0 (tasks on no network) */
  private readonly gw: LocalBridge;
  private readonly br: LocalBridge;

  private publish(ep: LocalEndpoint): void {
    if (!this.gossip || !this.state) return;
    if (ep.taskId && this.withdrawn.has(ep.taskId)) return;
    const rec: EndpointRecord = {
      name: ep.name,
      ip: ep.ip,
      ...(ep.service ? { service: ep.service, task: ep.taskId } : {}),
      ...(ep.aliases?.length ? { aliases: ep.aliases } : {}),
      ...(ep.sbox ? { sbox: true, mac: ep.mac } : {}),
    };
    const serving = this.serving(ep.taskId);
    if (ep.taskId) {
      if (serving) this.withheld.delete(ep.taskId);
      else this.withheld.add(ep.taskId);
    }
    // The network's own VTEP source: for an encrypted one the tunnel address, so peers' VXLAN goes through WireGuard.
    const vtep = this.overlayNetwork(ep.networkId)?.cfg.underlayIp ?? this.state.advertiseAddr;
    this.gossip.publish(ep.networkId, ep.id, { ip: ep.ip, mac: ep.mac, vtep }, serving ? rec : undefined);
    this.refreshDns();
    this.gossip.pushPeers(ep.networkId);
  }

  /** Gossip joins through the managers (any of them), never through ourselves. */
  private gossipSeeds(): string[] {
    const st = this.state;
    if (!st) return [];
    const addrs = this.control ? this.control.members().map((m) => m.addr) : (this.client?.managers ?? [st.managerAddr]);
    return [...new Set(addrs.map((a) => splitHostPort(a).host))].filter((h) => h !== st.advertiseAddr).map((h) => `${h}:${GOSSIP_PORT}`);
  }

  /**
   * This manager's etcd member and the store over it. `new`: the first member of a new swarm;
   * `join`: a learner the leader just added, promoted once caught up; `restart`: the member of
   * a previous run (its data directory knows the cluster; a quorum need not be there yet).
   */
  private async openControl(certs: CertFiles, how: 'new' | 'join' | 'restart', forceNewCluster = false, crlPem?: string): Promise<ControlPlane> {
    const st = this.state!;
    const own = `${st.advertiseAddr}:${splitHostPort(st.listenAddr).port}`;
    let initialCluster: Record<string, string> = { [st.nodeId]: peerUrl(st.advertiseAddr) };
    if (how === 'join') {
      const client = this.client ?? new ManagerClient(st.managers ?? [st.managerAddr], certs);
      const r = await client.request<{ initialCluster: Record<string, string>; crl: string }>('POST', '/v1/etcd/join', {});
      initialCluster = r.initialCluster;
      crlPem = r.crl;
    }
    const etcd = new EtcdMember({
      name: st.nodeId,
      dir: this.disk.etcdDir,
      advertiseIp: st.advertiseAddr,
      tls: { ...certs, ...(crlPem ? { crlPem } : {}) },
      initialCluster,
      state: how === 'new' ? 'new' : 'existing',
      clusterToken: st.clusterId,
      forceNewCluster,
      log: this.log.child({ component: 'etcd' }),
    });
    this.etcdStarting = etcd;
    try {
      // A restart waits as long as the other managers take to come back.
      await etcd.start(how === 'new' ? 'healthy' : 'listening', how === 'restart' ? Infinity : 20_000);
    } finally {
      this.etcdStarting = undefined;
    }
    const kv = new EtcdKv({ url: etcd.clientUrl, ...certs });
    try {
      // A learner serves no watch: it must vote first.
      if (how === 'join') await etcd.waitVoter();
      const store = await openStore(kv, st.nodeId);
      store.onCommit = (s) => this.onStoreCommit?.(s);
      const control = new ControlPlane({
        nodeId: st.nodeId,
        clusterId: st.clusterId,
        store,
        kv,
        etcd,
        managerAddr: own,
        log: this.log.child({ component: 'control' }),
      });
      // A new swarm's store is empty until init() writes its first state.
      if (how !== 'new') await control.openApi();
      return control;
    } catch (e) {
      kv.close();
      await etcd.stop();
      throw e;
    }
  }

  private async closeControl(control: ControlPlane): Promise<void> {
    // The goodbye of this node's own session goes out before the store does.
    await Promise.resolve()
      .then(() => control.dispatcher.drain())
      .catch(() => undefined);
    control.removeAllListeners();
    control.close();
    control.store.close();
    control.store.kv.close();
    await control.etcd.stop();
  }

  /** A manager node: the control plane, the manager API, and this node's own session with its dispatcher. */
  private async startControl(control: ControlPlane, certs: CertFiles): Promise<void> {
    const st = this.state!;
    this.control = control;
    this.client ??= new ManagerClient([...(st.managers ?? [st.managerAddr]), ...control.members().map((m) => m.addr)], certs);
    this.server = new ManagerServer(control, certs, this.log.child({ component: 'manager-api' }));
    control.on('leading', (a: Active) => this.onLeading(a));
    // Whichever manager changed them, every manager's watch brings these.
    control.on('gossip-keys', (k: string[]) => this.gossip?.setKeys(k));
    // A node removed from the swarm leaves gossip too (its daemon stops on the refused session).
    control.on('node-removed', (id: string) => this.gossip?.ml.markDead(id));
    control.store.on('change', () => this.watchLeader());
    this.unwatchEvents?.();
    this.unwatchEvents = this.events.watchSwarm(control.store);
    if (control.leading) this.onLeading(control.leading);
    await this.server.listen(st.listenAddr);
    await control.start();
    this.startLocalSession(control);
    this.watchLeader();
  }

  /** Stops this node's control plane, manager API and etcd member (no hand-over to the agent). */
  private async stopControl(): Promise<void> {
    const control = this.control;
    this.control = undefined;
    this.unwatchEvents?.();
    this.unwatchEvents = undefined;
    if (this.session instanceof LocalSession) {
      void this.session.stop();
      this.session = undefined;
    }
    this.leaderLink?.client.close();
    this.leaderLink = undefined;
    await this.server?.close();
    this.server = undefined;
    if (control) await this.closeControl(control);
  }

  /**
   * `swarm init --force-new-cluster`: etcd restarts as a one-member cluster with this member's
   * data (etcd's own --force-new-cluster), and every other manager becomes a worker that may
   * rejoin or be promoted again.
   */
  private async forceNewCluster(): Promise<void> {
    const certs = this.disk.loadCerts()!;
    await this.stopControl();
    const control = await this.openControl(certs, 'restart', true);
    await control.store.tx(() => {
      for (const n of control.store.listNodes()) {
        if (n.role !== 'manager' || n.id === control.nodeId) continue;
        n.role = 'worker';
        n.state = 'down';
        n.message = 'removed from the managers by --force-new-cluster';
        n.updatedAt = new Date().toISOString();
        control.store.putNode(n);
      }
    });
    await control.takeOver();
    await this.startControl(control, certs);
    this.log.warn('forced a new cluster: this node is the only manager');
  }

  private onLeading(a: Active): void {
    // The leader sees a node's session key go the moment the node's daemon dies: tell gossip at
    // once instead of waiting for probes and suspicion (a live node refutes).
    a.manager.on('node-state', (n: NodeRecord) => {
      if (n.state === 'down' && n.message.includes('session closed')) this.gossip?.ml.markDead(n.id);
    });
  }

  /** A worker's session: with any manager, the next one when that one is unreachable. */
  private startAgent(certs: CertFiles): void {
    const st = this.state!;
    this.client ??= new ManagerClient(st.managers ?? [st.managerAddr], certs);
    void this.session?.stop();
    this.wireSession(new AgentSession(this.client, this.log.child({ component: 'agent' })));
    // Every node has the ingress network, so a worker learns it as soon as it is connected.
    this.session!.on('connected', () => {
      void this.client
        ?.request<NetworkRecord>('GET', '/v1/networks/ingress')
        .then((n) => this.networks.set(n.id, n))
        .catch((e: unknown) => this.log.warn('could not fetch the ingress network', { error: errorMessage(e) }));
    });
    this.session!.start();
  }

  /** A manager node's session, with its own manager's dispatcher, in-process. */
  private startLocalSession(control: ControlPlane): void {
    void this.session?.stop();
    this.wireSession(new LocalSession(control.dispatcher, this.state!.nodeId, this.log.child({ component: 'agent' })));
    this.session!.start();
  }

  /** What a node does with its session, remote or local. */
  private wireSession(session: NodeSession): void {
    this.session = session;
    session.on('connected', (msg: { gossipKeys?: string[]; managers?: string[]; node?: NodeRecord }) => {
      const role = msg.node?.role;
      if (role && this.state && role !== this.state.role)
        void this.changeRole(role).catch((e: unknown) => this.log.error('could not change role', { role, error: errorMessage(e) }));
      if (msg.managers?.length && this.state) {
        this.client?.setManagers(msg.managers);
        if (JSON.stringify(this.state.managers) !== JSON.stringify(msg.managers)) {
          this.state.managers = msg.managers;
          this.disk.saveState(this.state);
        }
      }
      if (msg.gossipKeys?.length) {
        if (this.gossip) {
          this.gossip.setKeys(msg.gossipKeys);
          void this.gossip.rejoin();
        } else void this.startGossip(msg.gossipKeys).catch((e: unknown) => this.log.error('gossip start failed', { error: errorMessage(e) }));
      }
      void this.encryption.welcome(msg.node).catch((e: unknown) => this.log.error('could not set up the WireGuard identity', { error: errorMessage(e) }));
      // A new session: the manager learns what this node holds (after a restart, once adopted),
      // and finishes the tasks and endpoints it no longer has.
      void this.restored.then(() => {
        if (this.session === session) session.send({ type: 'state', ...this.nodeReport() });
      });
    });
    session.on('refused', () => {
      if (!this.gossip) return;
      this.log.warn('removed from the swarm by its manager: leaving gossip');
      void this.gossip.stop(false);
      this.gossip = undefined;
    });
    session.on(
      'message',
      (msg: {
        type: string;
        gossipKeys?: string[];
        tasks?: TaskRecord[];
        networks?: NetworkRecord[];
        vips?: ServiceVipEntry[];
        mesh?: MeshAssignment;
        tunnel?: TunnelAssignment;
        configs?: { id: string; data: string }[];
      }) => {
        if (this.session !== session) return;
        if (msg.type === 'gossip-keys' && msg.gossipKeys?.length) this.gossip?.setKeys(msg.gossipKeys);
        if (msg.type === 'logs-request') {
          const req = msg as unknown as { reqId: string; serviceId: string; since?: string };
          let lines = this.serviceLogLines(req.serviceId, typeof req.since === 'string' ? req.since : undefined);
          // A session line is at most 1 MiB: send the newest lines that fit.
          while (lines.length > 1 && JSON.stringify(lines).length > 900_000) lines = lines.slice(Math.floor(lines.length / 2));
          session.send({ type: 'logs', reqId: req.reqId, lines });
        }
        if (msg.type === 'assignments' && msg.tasks && !this.leaving) {
          for (const n of msg.networks ?? []) this.networks.set(n.id, n);
          this.setVips(msg.vips ?? []);
          if (msg.mesh) this.setMesh(msg.mesh);
          void this.encryption.assign(msg.tunnel);
          for (const c of msg.configs ?? []) this.configData.set(c.id, c.data);
          void this.tasks.apply(msg.tasks);
        }
      },
    );
  }

  /**
   * A follower manager holds a connection to the leader's manager port. When it drops and the
   * port refuses connections, the leader's daemon died: its election key goes at once.
   */
  private leaderLink: { addr: string; client: ManagerClient } | undefined;
  private watchLeader(): void {
    const c = this.control;
    const addr = c && !c.leading ? c.leaderAddr() : undefined;
    const target = addr && addr !== c?.ownAddr ? addr : undefined;
    if (target === this.leaderLink?.addr) return;
    this.leaderLink?.client.close();
    this.leaderLink = undefined;
    const certs = target && this.disk.loadCerts();
    if (!target || !certs) return;
    const client = new ManagerClient(target, certs);
    const link = { addr: target, client };
    this.leaderLink = link;
    const dropped = (): void => {
      if (this.leaderLink !== link) return;
      void this.probeLeader().finally(() => {
        if (this.leaderLink !== link) return;
        client.close();
        this.leaderLink = undefined;
        setTimeout(() => this.watchLeader(), 500).unref();
      });
    };
    client.open().then((s) => s.once('close', dropped), dropped);
  }

  private async probeLeader(): Promise<void> {
    const c = this.control;
    const addr = c?.leaderAddr();
    const id = c?.leaderId();
    if (!c || c.leading || !addr || !id || id === this.state?.nodeId) return;
    if (await portRefuses(addr)) await c.holderGone(id, 'its manager port refuses connections');
  }

  /**
   * The leader promoted or demoted this node: take a certificate for the new role, then start
   * its etcd member (a learner that catches up) and manager API, or stop them.
   */
  private changeRole(role: 'manager' | 'worker'): Promise<void> {
    return this.lock.lock(async () => {
      const st = this.state;
      const old = this.disk.loadCerts();
      if (!st || !old || !this.client || st.role === role) return;
      this.log.info('changing role', { from: st.role, to: role });
      await this.abortControlStart();
      const { csrPem, keyPem } = await createCsr();
      const { cert } = await this.client.request<{ cert: string }>('POST', '/v1/renew', { csr: csrPem });
      if (certInfo(cert).role !== role)
        throw new VxError(`the manager issued a ${String(certInfo(cert).role)} certificate, not a ${role} one: will retry on the next session`, 503);
      const certs = { caPem: old.caPem, certPem: cert, keyPem };
      this.disk.saveCerts(certs);
      this.client.setTls(certs);
      if (role === 'manager') {
        await this.stopControl();
        this.disk.wipeEtcd();
        st.role = 'manager';
        this.disk.saveState(st);
        await this.startControl(await this.openControl(certs, 'join'), certs);
      } else {
        // The manager that demoted it has removed this member from etcd (or the leader will: it
        // matches members to roles). From now on a session with another manager, as any worker.
        await this.stopControl();
        this.disk.wipeEtcd();
        st.role = 'worker';
        this.disk.saveState(st);
        this.startAgent(certs);
      }
      this.log.info('node role changed', { role });
    });
  }

  private async waitConnected(ms: number): Promise<void> {
    if (!this.session || this.session.connected) return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new VxError('timeout waiting for the manager session', 503)), ms);
      this.session!.once('connected', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** On a restart the sandboxes are kept for adoption; pruneSandboxes() removes the rest. */
  private async startOverlay(adopt = false): Promise<void> {
    this.overlay = new OverlayHost({
      prefix: this.cfg.netnsPrefix,
      underlayIp: this.state!.advertiseAddr,
      tunnelDir: path.join(this.cfg.execRoot, 'wireguard'),
      reconcileMs: this.cfg.reconcileMs ?? 3000,
      log: this.log.child({ component: 'overlay' }),
    });
    await this.overlay.start({ adopt });
    await this.encryption.restore().catch((e: unknown) => this.log.error('could not restore the WireGuard tunnel identity', { error: errorMessage(e) }));
    // Egress for the tasks: the bridge, masquerade and isolation, and the addresses tasks hold.
    for (const b of [this.gw, this.br])
      await b.start().catch((e: unknown) => this.log.error(`${b.cfg.name} could not be set up: tasks have no way out`, { error: errorMessage(e) }));
    // The load balancers are read back and repaired on the overlay's period, as its FDB is.
    if (this.lbTimer) clearInterval(this.lbTimer);
    this.lbTimer = setInterval(() => void this.lb.reconcile().then(() => this.mesh.reconcile()), this.cfg.reconcileMs ?? 3000);
    this.lbTimer.unref();
  }
  private lbTimer: NodeJS.Timeout | undefined;

  private scheduleRenewal(certs: CertFiles): void {
    const info = certInfo(certs.certPem);
    const delay = Math.min(renewalDelayMs(info.notBefore, info.notAfter), 2 ** 31 - 1);
    this.renewTimer = setTimeout(
      () => void this.renewCert().catch((e: unknown) => this.log.error('certificate renewal failed', { error: errorMessage(e) })),
      delay,
    );
    this.renewTimer.unref();
  }

  private async renewCert(): Promise<void> {
    const old = this.disk.loadCerts();
    if (!old || !this.state) return;
    const { csrPem, keyPem } = await createCsr();
    const certPem = this.api
      ? await this.api.manager.renew(this.state.nodeId, csrPem)
      : (await this.client!.request<{ cert: string }>('POST', '/v1/renew', { csr: csrPem })).cert;
    const certs = { caPem: old.caPem, certPem, keyPem };
    this.disk.saveCerts(certs);
    this.client?.setTls(certs);
    this.log.info('node certificate renewed', { notAfter: certInfo(certPem).notAfter.toISOString() });
    this.scheduleRenewal(certs);
  }

  /** An explicit IP, an interface name, or (none given) the one global IPv4 address here. */
  private async resolveAdvertise(given: string | undefined): Promise<string> {
    const r = Rtnl.open();
    try {
      const links = await r.getLinks();
      const addrs = (await r.getAddresses()).filter((a) => !a.ip.startsWith('127.'));
      if (given) {
        const host = splitHostPort(given).host;
        if (isIp(host)) return host;
        const link = links.find((l) => l.name === host);
        const a = link && addrs.find((x) => x.index === link.index);
        if (!a)
          throw new InvalidArgumentError(
            `advertise address must be a non-zero IPv4 address or network interface (with optional port number); "${given}" is neither`,
          );
        return a.ip;
      }
      const uniq = [...new Set(addrs.map((a) => a.ip))];
      if (uniq.length === 1) return uniq[0]!;
      if (uniq.length === 0) throw new InvalidArgumentError('could not find an IPv4 address to advertise: specify one with --advertise-addr');
      throw new InvalidArgumentError(
        `could not choose an IP address to advertise since this system has multiple addresses (${uniq.join(', ')}): specify one with --advertise-addr`,
      );
    } finally {
      r.close();
    }
  }

  // ---- cluster state access ----

  /** The cluster API of this manager node: any manager serves it, writing straight to etcd. */
  requireManager(): Manager {
    return this.requireApi().manager;
  }

  requireOrchestrator(): Orchestrator {
    return this.requireApi().orchestrator;
  }

  private requireApi(): Active {
    if (!this.state) throw new NotInSwarmError();
    if (this.state.role === 'manager' && !this.control)
      throw new VxError("this manager is starting: its etcd member waits for a quorum of the swarm's managers to be back", 503);
    if (!this.control) throw new NotManagerError();
    return this.control.api;
  }

  localNode(): NodeRecord | undefined {
    return this.control && this.state ? this.control.store.getNode(this.state.nodeId) : undefined;
  }

  /** Networks this node lists: all of them on a manager; ingress and those in local use on a worker. */
  listNetworks(): NetworkRecord[] {
    if (!this.state) return [];
    if (this.api) return this.api.manager.listNetworks();
    const used = new Set(this.endpoints.map((e) => e.networkId));
    return [...this.networks.values()].filter((n) => n.ingress || used.has(n.id));
  }

  findNetwork(ref: string): NetworkRecord {
    if (this.api) return this.api.manager.findNetwork(ref);
    const list = this.listNetworks();
    const n = list.find((x) => x.id === ref) ?? list.find((x) => x.name === ref) ?? list.find((x) => ref.length > 0 && x.id.startsWith(ref));
    if (!n) throw new NotFoundError(`network ${ref} not found`);
    return n;
  }

  /**
   * Docker's local networks on this node: host and none always, bridge (docker0) and
   * docker_gwbridge once set up. IDs are stable for this node.
   */
  localNetworks(): LocalNetworkInfo[] {
    const who = this.state?.nodeId ?? this.hostname;
    const id = (name: string): string => createHash('sha256').update(`${who}/${name}`).digest('hex');
    const out: LocalNetworkInfo[] = [
      { id: id('host'), name: 'host', driver: 'host', createdAt: this.startedAt.toISOString(), options: {} },
      { id: id('none'), name: 'none', driver: 'null', createdAt: this.startedAt.toISOString(), options: {} },
    ];
    for (const b of [this.br, this.gw])
      if (b.up)
        out.push({
          id: id(b.cfg.name),
          name: b.cfg.name === 'docker0' ? 'bridge' : b.cfg.name,
          driver: 'bridge',
          createdAt: this.startedAt.toISOString(),
          subnet: b.cfg.subnet,
          gateway: b.cfg.gateway,
          options: {
            'com.docker.network.bridge.name': b.cfg.name,
            'com.docker.network.bridge.enable_icc': String(b.cfg.icc),
            'com.docker.network.bridge.enable_ip_masquerade': 'true',
            ...(b.cfg.name === 'docker0' ? { 'com.docker.network.bridge.default_bridge': 'true' } : {}),
          },
        });
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** node-local endpoints being made (see nodeReport) */
  private creatingEndpoints = 0;
  /** Docker's event stream: this node's containers, and the swarm's objects on a manager */
  readonly events = new EventLog();
  private unwatchEvents: (() => void) | undefined;

  /** told how long each commit of this manager's store took (metrics) */
  onStoreCommit: ((seconds: number) => void) | undefined;

  /** The overlay networks instantiated on this node. */
  overlayNetworks(): ReturnType<OverlayHost['listNetworks']> {
    return this.overlay?.listNetworks() ?? [];
  }

  /** The embedded resolver's counters, once it runs. */
  async dnsStats(): Promise<Record<string, number> | undefined> {
    return this.dns?.stats();
  }

  /** Local data-plane view of a network (sandbox, peers) if this node has it. */
  overlayNetwork(id: string): ReturnType<OverlayHost['network']> | undefined {
    return this.overlay?.hasNetwork(id) ? this.overlay.network(id) : undefined;
  }

  /** This node's WireGuard tunnel as its process reports it (peers' endpoints, handshakes, bytes); undefined while none runs. */
  async tunnelState(): Promise<(NonNullable<Awaited<ReturnType<Tunnel['state']>>> & { hostnames: Record<string, string> }) | undefined> {
    const t = this.overlay?.tunnelIfAny;
    const st = t ? await t.state() : undefined;
    if (!st) return undefined;
    const hostnames: Record<string, string> = {};
    for (const p of st.peerNodes) hostnames[p.nodeId] = this.gossip?.ml.get(p.nodeId)?.meta?.hostname ?? '';
    return { ...st, hostnames };
  }

  /** A new WireGuard key pair for this node, its peers told through the managers (no packet lost). */
  rotateTunnelKey(): Promise<string> {
    if (!this.state) throw new VxError('This node is not part of a swarm', 503);
    return this.encryption.rotate();
  }

  // ---- endpoints (attached through the control plane) ----

  listEndpoints(): LocalEndpoint[] {
    return [...this.endpoints];
  }

  createEndpoint(networkRef: string, name?: string): Promise<LocalEndpoint> {
    return this.lock.lock(async () => {
      if (!this.state || !this.overlay) throw new NotInSwarmError();
      const epName = name || `ep-${newId().slice(0, 12)}`;
      if (this.endpoints.some((e) => e.name === epName)) throw new ConflictError(`endpoint ${epName} already exists on this node`);
      // Counted in the node's reports until it is listed: its address is taken before we know it.
      this.creatingEndpoints++;
      const { attachment, network } = await (
        this.api
          ? this.api.manager.attachLocal(networkRef, this.state.nodeId, epName)
          : this.client!.request<{ attachment: AttachmentRecord; network: NetworkRecord }>('POST', '/v1/attachments', {
              network: networkRef,
              name: epName,
            })
      ).catch((e: unknown) => {
        this.creatingEndpoints--;
        throw e;
      });
      const ep: LocalEndpoint = {
        id: attachment.id,
        name: epName,
        networkId: network.id,
        networkName: network.name,
        ip: attachment.ip,
        mac: attachment.mac,
        netns: `${this.cfg.netnsPrefix}ep-${attachment.id.slice(0, 12)}`,
      };
      try {
        await this.plumbLocked(network, ep);
      } catch (e) {
        if (netnsExists(ep.netns)) deleteNetns(ep.netns);
        await this.releaseRemote(attachment.id).catch(() => undefined);
        throw e;
      } finally {
        this.creatingEndpoints--;
      }
      return ep;
    });
  }

  /** Instantiates the network here if needed, plumbs the endpoint into its namespace, publishes it. */
  private async plumbLocked(net: NetworkRecord, ep: LocalEndpoint): Promise<void> {
    try {
      this.networks.set(net.id, net);
      await this.overlay!.createNetwork(overlaySpec(net));
      if (!netnsExists(ep.netns)) await createNetnsAsync(ep.netns);
      // A task's way out is docker_gwbridge (none on internal networks), never an overlay.
      await this.overlay!.attach(net.id, overlayEndpoint(ep));
    } catch (e) {
      await this.dropNetworkIfUnused(net.id);
      throw e;
    }
    this.endpoints.push(ep);
    this.saveEndpoints();
    await this.gossipStarting?.catch(() => undefined);
    this.publish(ep);
  }

  removeEndpoint(ref: string): Promise<void> {
    return this.lock.lock(async () => {
      const ep = this.endpoints.find((e) => e.id === ref || e.name === ref) ?? this.endpoints.find((e) => ref.length > 0 && e.id.startsWith(ref));
      if (!ep) throw new NotFoundError(`endpoint ${ref} not found on this node`);
      await this.removeEndpointLocked(ep, false);
    });
  }

  private async removeEndpointLocked(ep: LocalEndpoint, leaving: boolean): Promise<void> {
    if (this.overlay?.hasNetwork(ep.networkId)) {
      await this.overlay.detach(ep.networkId, ep.id).catch((e: unknown) => {
        if (!(e instanceof NotFoundError)) throw e;
      });
    }
    // A task's namespace is shared by its endpoints; the task runner removes it after the last.
    if (!ep.taskId) deleteNetns(ep.netns);
    if (ep.sbox) {
      this.gw.release(ep.netns);
      this.mesh.forgetSbox();
      this.sboxGw = undefined;
    }
    this.endpoints = this.endpoints.filter((e) => e !== ep);
    this.saveEndpoints();
    this.gossip?.unpublish(ep.networkId, ep.id, !this.endpoints.some((e) => e.networkId === ep.networkId));
    this.refreshDns();
    // The mesh sandbox's address is the manager's to give back (with the node).
    if (!ep.taskId && !ep.sbox)
      await this.releaseRemote(ep.id).catch((e: unknown) => {
        if (!leaving) throw e;
      });
    await this.dropNetworkIfUnused(ep.networkId);
  }

  // ---- task endpoints (the manager allocated them; the task runner asks for them) ----

  /** A network's record: from the store on a manager, from the manager (once) on a worker. */
  private async networkRecord(id: string): Promise<NetworkRecord> {
    if (this.api) return this.api.manager.store.getNetwork(id) ?? this.api.manager.findNetwork(id);
    const known = this.networks.get(id) ?? this.control?.store.getNetwork(id);
    if (known) return known;
    const n = await this.client!.request<NetworkRecord>('GET', `/v1/networks/${encodeURIComponent(id)}`);
    this.networks.set(n.id, n);
    return n;
  }

  private attachTaskEndpoint(t: TaskRecord, net: NetworkRecord, a: TaskRecord['networks'][number], ns: string): Promise<void> {
    return this.lock.lock(async () => {
      if (!this.state || !this.overlay) throw new NotInSwarmError();
      if (this.endpoints.some((e) => e.id === a.attachmentId)) return;
      await this.plumbLocked(net, {
        id: a.attachmentId,
        name: taskName(t),
        networkId: net.id,
        networkName: net.name,
        ip: a.ip,
        mac: a.mac,
        netns: ns,
        // A task's Nth network is its ethN (ingress first, as Docker's).
        ifname: `eth${Math.max(
          0,
          t.networks.findIndex((n) => n.attachmentId === a.attachmentId),
        )}`,
        taskId: t.id,
        service: t.serviceName,
        aliases: t.spec.networks.find((x) => x.target === net.id)?.aliases ?? [],
      });
    });
  }

  /** A task on no overlay still gets its own namespace, with only loopback. */
  private async ensureTaskNetns(ns: string): Promise<void> {
    if (netnsExists(ns)) return;
    await createNetnsAsync(ns);
    const r = Rtnl.open(ns);
    try {
      await r.setUp('lo');
    } finally {
      r.close();
    }
  }

  private detachTask(taskId: string, ns: string): Promise<void> {
    return this.lock.lock(async () => {
      for (const ep of this.endpoints.filter((e) => e.taskId === taskId)) await this.removeEndpointLocked(ep, true);
      if (netnsExists(ns)) deleteNetns(ns);
      this.lb.forget(ns);
      this.mesh.forgetTask(ns);
      this.gw.release(ns);
      this.br.release(ns);
      this.withdrawn.delete(taskId);
      this.unready.delete(taskId);
      this.withheld.delete(taskId);
    });
  }

  /**
   * A task's state for the manager. Reports queue per task, the newest replacing one not yet sent
   * (states only move forward), and at most REPORTS_IN_FLIGHT go at once: four hundred task starts
   * are four hundred reports, not twelve hundred requests at the same moment.
   */
  private async reportTask(taskId: string, r: TaskStatusReport): Promise<void> {
    if (!this.state) return;
    // A manager node writes its reports through its own store (group commit batches them).
    if (this.api) return this.api.orchestrator.reportStatus(this.state.nodeId, taskId, r);
    // One queued send per task: it takes whichever report is newest when its turn comes.
    const queued = this.reports.has(taskId);
    this.reports.set(taskId, r);
    if (queued) return;
    void this.reportSends.run(async () => {
      const latest = this.reports.get(taskId)!;
      this.reports.delete(taskId);
      await this.client
        ?.request('POST', `/v1/tasks/${encodeURIComponent(taskId)}/status`, latest, REPORT_TIMEOUT_MS)
        .catch((e: unknown) => this.log.warn('task status report failed', { task: taskId, state: latest.state, error: errorMessage(e) }));
    });
  }
  /** reports waiting for their send, newest per task */
  private readonly reports = new Map<string, TaskStatusReport>();
  private readonly reportSends = new Semaphore(REPORTS_IN_FLIGHT);

  private async releaseRemote(attachmentId: string): Promise<void> {
    if (this.api) await this.api.manager.detach(attachmentId, this.state?.nodeId);
    else await this.client?.request('DELETE', `/v1/attachments/${encodeURIComponent(attachmentId)}`);
  }

  /** Networks are lazy: the sandbox goes with the last local endpoint. */
  private async dropNetworkIfUnused(networkId: string): Promise<void> {
    if (this.endpoints.some((e) => e.networkId === networkId)) return;
    if (this.overlay?.hasNetwork(networkId)) await this.overlay.deleteNetwork(networkId);
    if (!this.api) this.networks.delete(networkId);
  }

  /**
   * Writes the node's endpoints and their networks, off the event loop and coalesced: a burst of
   * task starts writes the (growing) files once per round, not once per endpoint.
   */
  private saveEndpoints(): void {
    this.saveDirty = true;
    this.saving ??= (async () => {
      while (this.saveDirty) {
        this.saveDirty = false;
        const nets = [...new Set(this.endpoints.map((e) => e.networkId))].map((id) => this.networks.get(id)).filter((n): n is NetworkRecord => !!n);
        try {
          await Promise.all([this.disk.saveEndpoints([...this.endpoints]), this.disk.saveNetworks(nets)]);
        } catch (e) {
          this.log.error('could not save endpoints', { error: errorMessage(e) });
        }
      }
      this.saving = undefined;
    })();
  }
  private saving: Promise<void> | undefined;
  private saveDirty = false;

  /** What this node holds: its task containers, the tasks being started, its own endpoints. */
  private nodeReport(): NodeReport {
    return {
      tasks: this.runtime
        .list()
        .filter((c) => c.labels[TASK_LABEL])
        .map((c) => ({ id: c.labels[TASK_LABEL]!, status: c.status, exitCode: c.exitCode, containerId: c.id })),
      starting: this.tasks.startingIds(),
      attachments: this.endpoints.filter((e) => !e.taskId).map((e) => e.id),
      ...(this.creatingEndpoints ? { creating: this.creatingEndpoints } : {}),
    };
  }

  // ---- service logs ----

  /** This node's log lines of a service's containers, prefixed as `docker service logs` prints them. */
  /** This node's lines of a service's tasks, those at or after `since` (an ISO time) when given. */
  serviceLogLines(serviceId: string, since?: string): ServiceLogLine[] {
    const out: ServiceLogLine[] = [];
    for (const c of this.runtime.list()) {
      if (c.labels['com.docker.swarm.service.id'] !== serviceId) continue;
      const [svc, slot] = c.name.split('.');
      const prefix = `${svc}.${slot}.${(c.labels[TASK_LABEL] ?? '').slice(0, 12)}@${this.hostname}    | `;
      const ids = { nodeId: this.state?.nodeId ?? '', serviceId, taskId: c.labels[TASK_LABEL] ?? '' };
      for (const l of this.runtime.readLogs(c.id).slice(-MAX_SERVICE_LOG_LINES))
        if (!since || l.time >= since) out.push({ time: l.time, stream: l.stream, text: l.log, prefix, ...ids });
    }
    return out;
  }

  /**
   * A service's logs from every node that runs its tasks (managers only), oldest first: asked over
   * each node's session, on whichever manager holds it.
   */
  async collectServiceLogs(serviceId: string, since?: string): Promise<ServiceLogLine[]> {
    const { manager: m, orchestrator } = this.requireApi();
    const control = this.control!;
    const self = this.state!.nodeId;
    const nodes = new Set(
      orchestrator.listTasks({ serviceId }).flatMap((t) => (t.nodeId && t.nodeId !== self && m.store.getNode(t.nodeId)?.state === 'ready' ? [t.nodeId] : [])),
    );
    const lines = this.serviceLogLines(serviceId, since);
    const certs = this.disk.loadCerts();
    await Promise.all(
      [...nodes].map(async (nodeId) => {
        const where = m.store.getSession(nodeId);
        if (!where) return;
        try {
          const got =
            where.manager === self
              ? await control.dispatcher.requestLogs(nodeId, serviceId, since)
              : certs
                ? (
                    await callManager(
                      where.managerAddr,
                      certs,
                      'POST',
                      '/v1/logs',
                      { node: nodeId, service: serviceId, ...(since ? { since } : {}) },
                      LOGS_TIMEOUT_MS + 1000,
                    )
                  ).lines
                : undefined;
          lines.push(...((got ?? []) as ServiceLogLine[]));
        } catch (e) {
          this.log.warn('could not get service logs from a node', { node: nodeId, error: errorMessage(e) });
        }
      }),
    );
    return lines.sort((a, b) => a.time.localeCompare(b.time));
  }

  /** Task namespaces (`<prefix>c-<task>`) that no container and no endpoint uses: crash leftovers. */
  private pruneContainerNamespaces(): void {
    const used = new Set([...this.runtime.list().map((c) => c.netns), ...this.endpoints.map((e) => e.netns)]);
    for (const ns of listNetns(`${this.cfg.netnsPrefix}c-`)) {
      if (used.has(ns)) continue;
      this.log.warn('removing a task namespace left by a crash', { netns: ns });
      deleteNetns(ns);
    }
  }

  /**
   * After a restart: rebuild sandboxes and re-plumb endpoints whose namespaces still exist. Each
   * network is its own sandbox and netlink socket, so networks are adopted side by side.
   */
  private async restoreEndpoints(): Promise<void> {
    const saved = this.disk.loadEndpoints();
    for (const n of this.disk.loadNetworks<NetworkRecord>()) this.networks.set(n.id, n);
    const byNetwork = new Map<string, LocalEndpoint[]>();
    for (const ep of saved) {
      const net = this.control?.store.getNetwork(ep.networkId) ?? this.networks.get(ep.networkId);
      if (!net || !netnsExists(ep.netns)) {
        this.log.warn('dropping endpoint lost while the daemon was down', { endpoint: ep.id });
        if (netnsExists(ep.netns)) deleteNetns(ep.netns);
        if (!ep.taskId && !ep.sbox) await this.releaseRemote(ep.id).catch(() => undefined);
        continue;
      }
      this.networks.set(net.id, net);
      byNetwork.set(net.id, [...(byNetwork.get(net.id) ?? []), ep]);
    }
    const limit = new Semaphore(RESTORE_PARALLEL);
    await Promise.all(
      [...byNetwork].map(([id, eps]) =>
        limit.run(async () => {
          try {
            await this.overlay!.createNetwork(overlaySpec(this.networks.get(id)!));
          } catch (e) {
            this.log.error('could not restore a network', { network: id, error: errorMessage(e) });
            return;
          }
          await Promise.all(
            eps.map(async (ep) => {
              try {
                await this.overlay!.attach(id, overlayEndpoint(ep));
                this.endpoints.push(ep);
                this.publish(ep);
              } catch (e) {
                this.log.error('could not restore endpoint', { endpoint: ep.id, error: errorMessage(e) });
              }
            }),
          );
        }),
      ),
    );
    this.saveEndpoints();
  }
}

/** What this machine offers tasks to reserve (Docker's Description.Resources). */
function machineResources(): { nanoCpus: number; memoryBytes: number } {
  return { nanoCpus: os.cpus().length * 1e9, memoryBytes: os.totalmem() };
}
