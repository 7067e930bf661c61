// One overlay network on one host: its sandbox, local endpoints, the desired remote
// peers, and the reconciler that makes the kernel match them.
import { ConflictError, InvalidArgumentError, KernelError, NotFoundError } from '../core/errors.js';
import { randomMac } from '../core/ids.js';
import { formatIp } from '../core/ipv4.js';
import type { Logger } from '../core/log.js';
import { Mutex } from '../core/mutex.js';
import { netnsExists, writeSysctl } from '../kernel/netns.js';
import { NUD_PERMANENT, Rtnl, type LinkInfo } from '../kernel/rtnl.js';
import { bridgeName, vethName, vxlanName } from './names.js';
import { diffPeers } from './peerdiff.js';
import { buildSandbox, destroySandbox, ensureSandboxLinks, type SandboxConfig } from './sandbox.js';
import { checkEndpointSpec, checkPeerSpec, subnetFor, type EndpointSpec, type ParsedSubnet, type PeerSpec } from './spec.js';

/** ARP retransmit interval inside containers (the kernel's default is 1000 ms). */
export const ARP_RETRANS_MS = 100;

export interface Endpoint {
  id: string;
  netns: string;
  ifname: string;
  ip: string;
  mac: string;
  subnet: string;
  gateway: string;
  mtu: number;
  veth: string;
  defaultRoute: boolean;
}

export interface RepairCounts {
  sandbox: number;
  links: number;
  endpoints: number;
  neigh: number;
  fdb: number;
}

export interface ReconcileReport {
  neighSet: number;
  neighDel: number;
  fdbSet: number;
  fdbDel: number;
  repairs: RepairCounts;
  ms: number;
}

/** A kernel entry as the reconciler judges it: as wanted, missing, or pointing elsewhere than wanted. */
export type EntryState = 'ok' | 'missing' | 'wrong';

/** What one network's sandbox holds in the kernel right now, beside what it should hold. */
export interface NetworkView {
  id: string;
  sandbox: string;
  mtu: number;
  /** its VTEPs send over the node's WireGuard tunnel */
  encrypted?: boolean;
  subnets: {
    index: number;
    subnet: string;
    gateway: string;
    /** the VNI the network's spec gives this subnet (the device's own is in vxlan) */
    wantVni: number;
    bridge?: { name: string; mac?: string; mtu: number; up: boolean };
    vxlan?: { name: string; vni: number; port: number; local?: string; mtu: number; up: boolean };
  }[];
  endpoints: (Endpoint & { vethMaster?: string; vethUp: boolean; vethMtu: number; present: boolean })[];
  /** each wanted remote peer and the state of its neighbour (IP → MAC) and FDB (MAC → VTEP) entries */
  peers: (PeerSpec & { subnet: number; device: string; neigh: EntryState; neighMac?: string; fdb: EntryState; fdbDst?: string[] })[];
  /** kernel entries on a VTEP that no wanted peer accounts for (left behind) */
  stale: { kind: 'neigh' | 'fdb'; device: string; key: string; value: string }[];
}

const zeroRepairs = (): RepairCounts => ({ sandbox: 0, links: 0, endpoints: 0, neigh: 0, fdb: 0 });

export class OverlayNetwork {
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly peers = new Map<string, PeerSpec>();
  /** what we believe we put in the kernel, per subnet index: neighbour IPs and FDB MACs */
  private programmed = new Map<number, { neigh: Set<string>; fdb: Set<string> }>();
  private readonly mutex = new Mutex();
  private pending: Promise<ReconcileReport> | undefined;
  private destroyed = false;
  /** totals since creation */
  readonly repairs: RepairCounts = zeroRepairs();
  /** time spent in reconcile passes, all of them */
  reconcileMsTotal = 0;
  reconciles = 0;

  private constructor(
    readonly id: string,
    readonly cfg: SandboxConfig,
    private readonly host: Rtnl,
    private sbx: Rtnl,
    private readonly log: Logger,
  ) {}

  /** Builds the sandbox, or adopts one of that name a previous run left (repairing it). */
  static async create(id: string, cfg: SandboxConfig, host: Rtnl, log: Logger): Promise<OverlayNetwork> {
    if (netnsExists(cfg.name)) {
      const sbx = Rtnl.open(cfg.name);
      try {
        await ensureSandboxLinks(cfg, host, sbx);
      } catch (e) {
        sbx.close();
        throw e;
      }
      log.info('adopted existing sandbox', { network: id, sandbox: cfg.name });
      return new OverlayNetwork(id, cfg, host, sbx, log);
    }
    const sbx = await buildSandbox(cfg, host);
    return new OverlayNetwork(id, cfg, host, sbx, log);
  }

  /** Forgets this network without touching the kernel (daemon stop: endpoints keep working). */
  release(): void {
    this.destroyed = true;
    this.sbx.close();
  }

  get sandbox(): string {
    return this.cfg.name;
  }
  get subnets(): ParsedSubnet[] {
    return this.cfg.subnets;
  }
  get mtu(): number {
    return this.cfg.mtu;
  }
  get encrypted(): boolean {
    return !!this.cfg.encrypted;
  }
  listEndpoints(): Endpoint[] {
    return [...this.endpoints.values()];
  }
  listPeers(): PeerSpec[] {
    return [...this.peers.values()];
  }
  get endpointCount(): number {
    return this.endpoints.size;
  }

  // ---- endpoints ----

  async attach(spec: EndpointSpec): Promise<Endpoint> {
    checkEndpointSpec(spec);
    const subnet = subnetFor(this.subnets, spec.ip, `endpoint ${spec.id}: address`);
    return this.mutex.lock(async () => {
      this.assertLive();
      if (this.endpoints.has(spec.id)) throw new ConflictError(`endpoint ${spec.id} is already attached to network ${this.id}`);
      const clash = [...this.endpoints.values()].find((e) => e.ip === spec.ip);
      if (clash) throw new ConflictError(`address ${spec.ip} is already used by endpoint ${clash.id} on network ${this.id}`);
      if (!netnsExists(spec.netns)) throw new NotFoundError(`endpoint ${spec.id}: container namespace ${spec.netns} not found`);
      const ep: Endpoint = {
        id: spec.id,
        netns: spec.netns,
        ifname: spec.ifname ?? 'eth0',
        ip: spec.ip,
        mac: spec.mac ?? randomMac(),
        subnet: subnet.text,
        gateway: formatIp(subnet.gateway),
        mtu: this.mtu,
        veth: vethName(spec.id),
        defaultRoute: spec.defaultRoute ?? true,
      };
      if (!(await this.adoptEndpoint(ep, subnet))) await this.plumb(ep, subnet);
      this.endpoints.set(ep.id, ep);
      // A local endpoint shadows a remote peer with the same address.
      if (this.peers.has(ep.ip)) void this.requestReconcile();
      return { ...ep };
    });
  }

  detach(endpointId: string): Promise<void> {
    return this.mutex.lock(async () => {
      const ep = this.endpoints.get(endpointId);
      if (!ep) throw new NotFoundError(`endpoint ${endpointId} is not attached to network ${this.id}`);
      await this.sbx.deleteLink(ep.veth);
      this.endpoints.delete(endpointId);
      if (this.peers.has(ep.ip)) void this.requestReconcile();
    });
  }

  /**
   * Takes over an endpoint a previous run plumbed: its veth is still in the sandbox and the
   * container still has the address. Returns false when there is nothing to adopt.
   */
  private async adoptEndpoint(ep: Endpoint, subnet: ParsedSubnet): Promise<boolean> {
    const v = await this.sbx.getLink(ep.veth);
    if (!v) return false;
    const c = Rtnl.open(ep.netns);
    try {
      const eth = await c.getLink(ep.ifname);
      const has = eth && eth.mac === ep.mac && (await c.getAddresses()).some((a) => a.index === eth.index && a.ip === ep.ip && a.prefix === subnet.cidr.prefix);
      if (!has) {
        await this.sbx.deleteLink(v.index);
        return false;
      }
    } finally {
      c.close();
    }
    const br = await this.sbx.mustGetLink(bridgeName(subnet.index));
    if (v.master !== br.index || !v.up) await this.sbx.setLink(v.index, { master: br.index, up: true });
    return true;
  }

  /** veth into the bridge, then address, MTU and routes inside the container. Undone on failure. */
  private async plumb(ep: Endpoint, subnet: ParsedSubnet): Promise<void> {
    try {
      await this.sbx.createVeth(ep.veth, { mtu: ep.mtu, peerName: ep.ifname, peerMac: ep.mac, peerNetns: ep.netns });
    } catch (e) {
      if (e instanceof KernelError && e.code === 'EEXIST')
        throw new ConflictError(`endpoint ${ep.id}: interface ${ep.ifname} already exists in namespace ${ep.netns}`);
      throw e;
    }
    try {
      const br = await this.sbx.mustGetLink(bridgeName(subnet.index));
      const v = await this.sbx.mustGetLink(ep.veth);
      await this.sbx.setLink(v.index, { master: br.index, up: true });
      const c = Rtnl.open(ep.netns);
      try {
        const links = await c.getLinks();
        const lo = links.find((l) => l.name === 'lo');
        if (lo && !lo.up) await c.setLink(lo.index, { up: true });
        const eth = links.find((l) => l.name === ep.ifname);
        if (!eth) throw new KernelError('get link', `${ep.ifname} in netns ${ep.netns}`, 19, 'ENODEV');
        await c.replaceAddress(eth.index, ep.ip, subnet.cidr.prefix);
        // A container that asks for a peer's MAC before gossip has brought the peer waits for its
        // next ARP retransmit: 1 s by default, 100 ms here. The proxy on the VTEP answers locally,
        // so the faster retries never cross the underlay.
        writeSysctl(ep.netns, `net.ipv4.neigh.${ep.ifname}.retrans_time_ms`, String(ARP_RETRANS_MS));
        await c.setLink(eth.index, { up: true });
        for (const other of this.subnets) {
          if (other.index !== subnet.index) await c.replaceRoute({ dst: formatIp(other.cidr.network), prefix: other.cidr.prefix, gateway: ep.gateway });
        }
        if (ep.defaultRoute && !(await c.getRoutes()).some((r) => r.prefix === 0)) await c.replaceRoute({ dst: '0.0.0.0', prefix: 0, gateway: ep.gateway });
      } finally {
        c.close();
      }
    } catch (e) {
      await this.sbx.deleteLink(ep.veth).catch(() => undefined);
      throw e;
    }
  }

  // ---- peers (desired state) ----

  /** Replaces the whole desired peer set. */
  async setPeers(peers: PeerSpec[]): Promise<ReconcileReport> {
    const next = new Map<string, PeerSpec>();
    for (const p of peers) {
      this.checkPeer(p);
      next.set(p.ip, { ip: p.ip, mac: p.mac, vtep: p.vtep });
    }
    this.peers.clear();
    for (const [k, v] of next) this.peers.set(k, v);
    return this.requestReconcile();
  }

  async upsertPeer(p: PeerSpec): Promise<ReconcileReport> {
    this.checkPeer(p);
    this.peers.set(p.ip, { ip: p.ip, mac: p.mac, vtep: p.vtep });
    return this.requestReconcile();
  }

  removePeer(ip: string): Promise<ReconcileReport> {
    this.peers.delete(ip);
    return this.requestReconcile();
  }

  private checkPeer(p: PeerSpec): void {
    checkPeerSpec(p);
    subnetFor(this.subnets, p.ip, 'peer address');
    if (p.vtep === this.cfg.underlayIp) throw new InvalidArgumentError(`peer ${p.ip}: VTEP ${p.vtep} is this host`);
  }

  // ---- reconciler ----

  /** Coalesces requests: every change made before the next run is covered by it. */
  requestReconcile(): Promise<ReconcileReport> {
    this.pending ??= new Promise<void>((r) => setImmediate(r)).then(() => {
      this.pending = undefined;
      return this.reconcile();
    });
    return this.pending;
  }

  reconcile(): Promise<ReconcileReport> {
    return this.mutex.lock(() => this.reconcileLocked());
  }

  /**
   * The sandbox as the kernel holds it (the reconciler's own read-back), each wanted peer's entries
   * judged against what gossip says they should be. Reads only: a fault is shown, not repaired.
   */
  async view(): Promise<NetworkView> {
    return this.mutex.lock(async () => {
      const v: NetworkView = {
        id: this.id,
        sandbox: this.sandbox,
        mtu: this.mtu,
        ...(this.encrypted ? { encrypted: true } : {}),
        subnets: [],
        endpoints: [],
        peers: [],
        stale: [],
      };
      if (this.destroyed || !netnsExists(this.sandbox)) return v;
      const [links, neighs, fdb] = await Promise.all([this.sbx.getLinks(), this.sbx.getNeighs(), this.sbx.getFdb()]);
      const byName = new Map(links.map((l) => [l.name, l]));
      const byIndex = new Map(links.map((l) => [l.index, l]));
      for (const s of this.subnets) {
        const br = byName.get(bridgeName(s.index));
        const vx = byName.get(vxlanName(s.index));
        v.subnets.push({
          index: s.index,
          subnet: s.text,
          gateway: formatIp(s.gateway),
          wantVni: s.vni,
          ...(br ? { bridge: { name: br.name, ...(br.mac ? { mac: br.mac } : {}), mtu: br.mtu, up: br.up } } : {}),
          ...(vx?.vxlan
            ? { vxlan: { name: vx.name, vni: vx.vxlan.vni, port: vx.vxlan.port, ...(vx.vxlan.local ? { local: vx.vxlan.local } : {}), mtu: vx.mtu, up: vx.up } }
            : {}),
        });
      }
      for (const ep of this.endpoints.values()) {
        const veth = byName.get(ep.veth);
        v.endpoints.push({
          ...ep,
          ...(veth?.master !== undefined && byIndex.get(veth.master) ? { vethMaster: byIndex.get(veth.master)!.name } : {}),
          vethUp: !!veth?.up,
          vethMtu: veth?.mtu ?? 0,
          present: !!veth,
        });
      }
      const localIps = new Set([...this.endpoints.values()].map((e) => e.ip));
      for (const s of this.subnets) {
        const vx = byName.get(vxlanName(s.index));
        if (!vx) continue;
        const neigh = new Map(neighs.filter((n) => n.index === vx.index).map((n) => [n.ip, n]));
        const fdbs = new Map<string, string[]>();
        for (const f of fdb) if (f.index === vx.index && f.self && f.mac !== '00:00:00:00:00:00') fdbs.set(f.mac, [...(fdbs.get(f.mac) ?? []), f.dst ?? '']);
        const wantIps = new Set<string>();
        const wantMacs = new Set<string>();
        for (const p of this.peers.values()) {
          if (localIps.has(p.ip) || subnetFor(this.subnets, p.ip, 'peer').index !== s.index) continue;
          wantIps.add(p.ip);
          wantMacs.add(p.mac);
          const n = neigh.get(p.ip);
          const dst = fdbs.get(p.mac);
          v.peers.push({
            ...p,
            subnet: s.index,
            device: vx.name,
            neigh: !n || n.state !== NUD_PERMANENT ? 'missing' : n.mac === p.mac ? 'ok' : 'wrong',
            ...(n?.mac ? { neighMac: n.mac } : {}),
            fdb: !dst ? 'missing' : dst.length === 1 && dst[0] === p.vtep ? 'ok' : 'wrong',
            ...(dst ? { fdbDst: dst } : {}),
          });
        }
        for (const [ip, n] of neigh)
          if (!wantIps.has(ip) && n.state === NUD_PERMANENT) v.stale.push({ kind: 'neigh', device: vx.name, key: ip, value: n.mac ?? '' });
        for (const [mac, dst] of fdbs) if (!wantMacs.has(mac)) v.stale.push({ kind: 'fdb', device: vx.name, key: mac, value: dst.join(',') });
      }
      return v;
    });
  }

  private async reconcileLocked(): Promise<ReconcileReport> {
    const t0 = performance.now();
    const report: ReconcileReport = { neighSet: 0, neighDel: 0, fdbSet: 0, fdbDel: 0, repairs: zeroRepairs(), ms: 0 };
    if (this.destroyed) return report;
    this.reconciles++;

    if (!netnsExists(this.sandbox)) {
      // The whole sandbox vanished: rebuild it and replug every endpoint.
      this.sbx.close();
      this.sbx = await buildSandbox(this.cfg, this.host);
      this.programmed.clear();
      report.repairs.sandbox++;
    } else {
      report.repairs.links += await ensureSandboxLinks(this.cfg, this.host, this.sbx);
    }
    const links = new Map((await this.sbx.getLinks()).map((l) => [l.name, l]));
    report.repairs.endpoints += await this.ensureEndpoints(links, report.repairs.sandbox > 0);

    const [neighs, fdb] = await Promise.all([this.sbx.getNeighs(), this.sbx.getFdb()]);
    const localIps = new Set([...this.endpoints.values()].map((e) => e.ip));
    for (const s of this.subnets) {
      const vx = links.get(vxlanName(s.index));
      if (!vx) throw new KernelError('get link', `${vxlanName(s.index)} in netns ${this.sandbox}`, 19, 'ENODEV');
      const desiredNeigh = new Map<string, string>();
      const desiredFdb = new Map<string, string>();
      for (const p of this.peers.values()) {
        if (localIps.has(p.ip) || subnetFor(this.subnets, p.ip, 'peer').index !== s.index) continue;
        desiredNeigh.set(p.ip, p.mac);
        desiredFdb.set(p.mac, p.vtep);
      }
      const actualNeigh = new Map<string, string | undefined>();
      for (const n of neighs) if (n.index === vx.index) actualNeigh.set(n.ip, n.state === NUD_PERMANENT ? n.mac : undefined);
      const actualFdb = new Map<string, string[]>();
      for (const f of fdb) {
        if (f.index !== vx.index || !f.self) continue;
        const list = actualFdb.get(f.mac) ?? [];
        list.push(f.dst ?? '');
        actualFdb.set(f.mac, list);
      }
      const prog = this.programmed.get(s.index) ?? { neigh: new Set<string>(), fdb: new Set<string>() };
      const d = diffPeers(desiredNeigh, desiredFdb, actualNeigh, actualFdb, prog);
      await Promise.all([
        ...d.neighDel.map((ip) => this.sbx.deleteNeigh(vx.index, ip)),
        ...d.fdbDel.map((f) => this.sbx.deleteFdb(vx.index, f.mac, f.dst || undefined)),
      ]);
      await Promise.all([
        ...d.neighSet.map((n) => this.sbx.replaceNeigh(vx.index, n.ip, n.mac)),
        ...d.fdbSet.map((f) => this.sbx.replaceFdb(vx.index, f.mac, f.dst)),
      ]);
      this.programmed.set(s.index, { neigh: new Set(desiredNeigh.keys()), fdb: new Set(desiredFdb.keys()) });
      report.neighSet += d.neighSet.length;
      report.neighDel += d.neighDel.length;
      report.fdbSet += d.fdbSet.length;
      report.fdbDel += d.fdbDel.length;
      report.repairs.neigh += d.repairs.neigh;
      report.repairs.fdb += d.repairs.fdb;
    }
    for (const k of Object.keys(this.repairs) as (keyof RepairCounts)[]) this.repairs[k] += report.repairs[k];
    report.ms = performance.now() - t0;
    this.reconcileMsTotal += report.ms;
    const r = report.repairs;
    if (r.sandbox + r.links + r.endpoints + r.neigh + r.fdb > 0) this.log.warn('overlay drift repaired', { network: this.id, ...r });
    return report;
  }

  /** Re-plugs endpoints whose veth vanished or came loose; returns how many it fixed. */
  private async ensureEndpoints(links: Map<string, LinkInfo>, rebuilt: boolean): Promise<number> {
    let fixed = 0;
    for (const ep of this.endpoints.values()) {
      const subnet = subnetFor(this.subnets, ep.ip, 'endpoint');
      const v = links.get(ep.veth);
      const br = links.get(bridgeName(subnet.index));
      if (!v) {
        if (!netnsExists(ep.netns)) continue; // the container is gone; its owner detaches it
        await this.plumb(ep, subnet);
        if (!rebuilt) fixed++;
      } else if (br && (v.master !== br.index || !v.up)) {
        await this.sbx.setLink(v.index, { master: br.index, up: true });
        fixed++;
      }
    }
    return fixed;
  }

  // ---- teardown ----

  destroy(): Promise<void> {
    return this.mutex.lock(async () => {
      if (this.destroyed) return;
      this.destroyed = true;
      for (const ep of this.endpoints.values()) await this.sbx.deleteLink(ep.veth).catch(() => undefined);
      this.endpoints.clear();
      await destroySandbox(this.sandbox, this.sbx);
    });
  }

  private assertLive(): void {
    if (this.destroyed) throw new NotFoundError(`network ${this.id} has been removed`);
  }
}
