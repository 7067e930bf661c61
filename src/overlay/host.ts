// The overlay data plane of one host: its networks, the reconcile timer, and crash
// cleanup at start. Everything above this layer speaks specs; everything below, netlink.
import { ConflictError, InvalidArgumentError, NotFoundError, errorMessage } from '../core/errors.js';
import { parseIp } from '../core/ipv4.js';
import { createLogger, type Logger } from '../core/log.js';
import { Rtnl } from '../kernel/rtnl.js';
import { sandboxName } from './names.js';
import { OverlayNetwork, type Endpoint, type ReconcileReport, type RepairCounts } from './network.js';
import { removeStaleSandboxes } from './sandbox.js';
import { Tunnel, WIREGUARD_OVERHEAD, type TunnelIdentity, type TunnelPeer } from './tunnel.js';
import { DEFAULT_VXLAN_PORT, MIN_MTU, VXLAN_OVERHEAD, parseNetworkSpec, type EndpointSpec, type NetworkSpec, type PeerSpec } from './spec.js';

export interface OverlayHostOptions {
  /** Prefix of every namespace this host makes; unique per daemon on a machine. */
  prefix: string;
  /** This host's underlay address (the VTEPs' source). */
  underlayIp: string;
  /** Namespace that holds the underlay; default: the process's own. */
  hostNetns?: string;
  /** Where the WireGuard tunnel keeps its process's socket and pid (encrypted networks); unset: none here. */
  tunnelDir?: string;
  /** Period of the full reconcile; 0 disables the timer. Default 3000 ms. */
  reconcileMs?: number;
  log?: Logger;
}

export interface UnderlayView {
  ip: string;
  prefix: number;
  device: string;
  mtu: number;
  /** the default route's gateway (the lab's router) */
  gateway?: string;
}

export class OverlayHost {
  private readonly networks = new Map<string, OverlayNetwork>();
  private readonly creating = new Map<string, Promise<OverlayNetwork>>();
  private timer: NodeJS.Timeout | undefined;
  private host: Rtnl | undefined;
  private underlayMtu = 1500;
  private tunnelRef: Tunnel | undefined;
  readonly log: Logger;

  constructor(readonly opts: OverlayHostOptions) {
    if (!/^[a-z0-9-]{1,24}$/.test(opts.prefix)) throw new InvalidArgumentError(`invalid namespace prefix "${opts.prefix}"`);
    parseIp(opts.underlayIp);
    this.log = opts.log ?? createLogger({ component: 'overlay' });
  }

  /**
   * Finds the underlay MTU and starts the reconcile timer. Sandboxes a previous run left are
   * removed, or with `adopt` kept so networks re-created now take them over (a restart must
   * not cut running endpoints off); pruneSandboxes() then removes the ones nobody took.
   */
  async start(opts: { adopt?: boolean } = {}): Promise<void> {
    this.host = Rtnl.open(this.opts.hostNetns);
    if (!opts.adopt) await this.pruneSandboxes();
    this.underlayMtu = await this.detectUnderlayMtu();
    const period = this.opts.reconcileMs ?? 3000;
    if (period > 0) {
      this.timer = setInterval(() => void this.reconcileAll(), period);
      this.timer.unref();
    }
  }

  /** Removes sandboxes under our prefix that belong to no network of ours. */
  async pruneSandboxes(): Promise<string[]> {
    const keep = new Set([...this.networks.values()].map((n) => n.sandbox));
    const removed = await removeStaleSandboxes(this.opts.prefix, keep);
    if (removed.length) this.log.warn('removed stale sandboxes', { removed });
    // A tunnel a previous run left that no adopted network needs goes too.
    if (this.opts.tunnelDir && !this.tunnelRef?.up && ![...this.networks.values()].some((n) => n.encrypted)) await Tunnel.reap(this.opts.tunnelDir, this.log);
    return removed;
  }

  private async detectUnderlayMtu(): Promise<number> {
    const host = this.mustHost();
    const addr = (await host.getAddresses()).find((a) => a.ip === this.opts.underlayIp);
    if (!addr) throw new NotFoundError(`underlay address ${this.opts.underlayIp} is not configured on this host`);
    const link = (await host.getLinks()).find((l) => l.index === addr.index);
    return link?.mtu ?? 1500;
  }

  /** The underlay as the kernel has it: the VTEPs' address, its device, prefix and MTU, and the way off its subnet. */
  async underlay(): Promise<UnderlayView> {
    const host = this.mustHost();
    const [addrs, links, routes] = await Promise.all([host.getAddresses(), host.getLinks(), host.getRoutes()]);
    const addr = addrs.find((a) => a.ip === this.opts.underlayIp);
    const link = addr ? links.find((l) => l.index === addr.index) : undefined;
    const dflt = routes.find((r) => r.prefix === 0 && r.gateway);
    return {
      ip: this.opts.underlayIp,
      prefix: addr?.prefix ?? 0,
      device: link?.name ?? '',
      mtu: link?.mtu ?? 0,
      ...(dflt?.gateway ? { gateway: dflt.gateway } : {}),
    };
  }

  get mtuDefault(): number {
    return this.underlayMtu - VXLAN_OVERHEAD;
  }

  /** The node's WireGuard tunnel, which encrypted networks ride. */
  get tunnel(): Tunnel {
    if (!this.opts.tunnelDir) throw new InvalidArgumentError('this host has no WireGuard tunnel configured');
    this.tunnelRef ??= new Tunnel(this.mustHost(), this.opts.tunnelDir, () => this.underlayMtu, this.log.child({ component: 'tunnel' }));
    return this.tunnelRef;
  }

  /** The tunnel if this host made one (nothing is started by asking). */
  get tunnelIfAny(): Tunnel | undefined {
    return this.tunnelRef;
  }

  setTunnelIdentity(id: TunnelIdentity): Promise<void> {
    return this.tunnel.setIdentity(id);
  }

  setTunnelPeers(peers: TunnelPeer[]): Promise<void> {
    return this.tunnel.setPeers(peers);
  }

  private mustHost(): Rtnl {
    if (!this.host) throw new Error('overlay host not started');
    return this.host;
  }

  /** Creates the network's sandbox (idempotent for an identical spec). */
  async createNetwork(spec: NetworkSpec): Promise<OverlayNetwork> {
    const subnets = parseNetworkSpec(spec);
    const existing = this.networks.get(spec.id) ?? (await this.creating.get(spec.id)?.catch(() => undefined));
    if (existing) {
      const same = JSON.stringify(existing.subnets.map((s) => [s.text, s.gateway, s.vni])) === JSON.stringify(subnets.map((s) => [s.text, s.gateway, s.vni]));
      if (!same) throw new ConflictError(`network ${spec.id} already exists with different subnets`);
      if (existing.encrypted !== !!spec.encrypted)
        throw new ConflictError(`network ${spec.id} already exists ${existing.encrypted ? 'encrypted' : 'unencrypted'}`);
      return existing;
    }
    for (const n of this.networks.values()) {
      for (const s of subnets) if (n.subnets.some((x) => x.vni === s.vni)) throw new ConflictError(`VNI ${s.vni} is already used by network ${n.id}`);
    }
    // An encrypted network's VTEP sends from the tunnel's address, inside WireGuard's header too.
    const local = spec.encrypted ? (await this.tunnel.ensure(), this.tunnel.ip!) : this.opts.underlayIp;
    const most = this.mtuDefault - (spec.encrypted ? WIREGUARD_OVERHEAD : 0);
    let mtu = spec.mtu ?? most;
    if (mtu > most) {
      this.log.warn('network MTU above what the underlay carries; clamped', { network: spec.id, asked: mtu, used: most });
      mtu = most;
    }
    if (mtu < MIN_MTU) throw new InvalidArgumentError(`network ${spec.id}: underlay MTU ${this.underlayMtu} leaves no room for VXLAN`);
    const cfg = {
      name: sandboxName(this.opts.prefix, spec.id),
      subnets,
      mtu,
      port: spec.port ?? DEFAULT_VXLAN_PORT,
      underlayIp: local,
      encrypted: !!spec.encrypted,
      hostNetns: this.opts.hostNetns,
    };
    const p = OverlayNetwork.create(spec.id, cfg, this.mustHost(), this.log);
    this.creating.set(spec.id, p);
    try {
      const net = await p;
      this.networks.set(spec.id, net);
      return net;
    } finally {
      this.creating.delete(spec.id);
    }
  }

  network(id: string): OverlayNetwork {
    const n = this.networks.get(id);
    if (!n) throw new NotFoundError(`network ${id} not found on this host`);
    return n;
  }

  hasNetwork(id: string): boolean {
    return this.networks.has(id);
  }

  listNetworks(): OverlayNetwork[] {
    return [...this.networks.values()];
  }

  async deleteNetwork(id: string): Promise<void> {
    const n = this.network(id);
    this.networks.delete(id);
    await n.destroy();
  }

  async attach(networkId: string, ep: EndpointSpec): Promise<Endpoint> {
    return this.network(networkId).attach(ep);
  }

  async detach(networkId: string, endpointId: string): Promise<void> {
    return this.network(networkId).detach(endpointId);
  }

  async setPeers(networkId: string, peers: PeerSpec[]): Promise<ReconcileReport> {
    return this.network(networkId).setPeers(peers);
  }

  /** One full pass over every network; errors are logged, not thrown (the timer calls this). */
  async reconcileAll(): Promise<void> {
    await this.tunnelRef?.reconcile();
    await Promise.all(
      [...this.networks.values()].map((n) =>
        n.requestReconcile().catch((e: unknown) => this.log.error('reconcile failed', { network: n.id, error: errorMessage(e) })),
      ),
    );
  }

  repairTotals(): RepairCounts {
    const t: RepairCounts = { sandbox: 0, links: 0, endpoints: 0, neigh: 0, fdb: 0 };
    for (const n of this.networks.values()) for (const k of Object.keys(t) as (keyof RepairCounts)[]) t[k] += n.repairs[k];
    return t;
  }

  /** Stops the timer and tears every network down, or with `keepKernelState` leaves them for a restart to adopt. */
  async close(opts: { keepKernelState?: boolean } = {}): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const [id, n] of [...this.networks]) {
      if (opts.keepKernelState) {
        n.release();
        this.networks.delete(id);
      } else await this.deleteNetwork(id).catch((e: unknown) => this.log.error('teardown failed', { network: id, error: errorMessage(e) }));
    }
    if (opts.keepKernelState) this.tunnelRef?.release();
    else if (this.tunnelRef) await this.tunnelRef.stop().catch((e: unknown) => this.log.error('tunnel teardown failed', { error: errorMessage(e) }));
    else if (this.opts.tunnelDir) await Tunnel.reap(this.opts.tunnelDir, this.log);
    this.tunnelRef = undefined;
    this.host?.close();
    this.host = undefined;
  }
}
