// The node's WireGuard tunnel, which encrypted overlays' VXLAN rides: each node has one address
// in TUNNEL_POOL on one interface; an encrypted network's VTEP sends from that address to the
// peer's, so the only packets on the wire are UDP to the WireGuard port. Unencrypted networks
// never touch it. Started on the first encrypted network, kept across a daemon restart.
import { VxError, errorMessage } from '../core/errors.js';
import { parseCidr } from '../core/ipv4.js';
import type { Logger } from '../core/log.js';
import type { Rtnl } from '../kernel/rtnl.js';
import { WireguardDevice, type WgDeviceState, type WgPeer } from '../kernel/wireguard.js';

/** Nodes' tunnel addresses: RFC 2544's benchmarking block, which no real network routes. */
export const TUNNEL_POOL = '198.18.0.0/15';
export const TUNNEL_IFNAME = 'vxwg0';
export const WIREGUARD_PORT = 51820;
/** outer IPv4 20 + UDP 8 + WireGuard's header and tag 32 */
export const WIREGUARD_OVERHEAD = 60;
const IDENTITY_WAIT_MS = 5000;

export interface TunnelIdentity {
  /** this node's tunnel address */
  ip: string;
  privateKey: string;
}

/** A node that shares an encrypted network with this one. */
export interface TunnelPeer {
  nodeId: string;
  publicKey: string;
  /** its underlay address */
  addr: string;
  tunnelIp: string;
}

export class Tunnel {
  private dev: WireguardDevice | undefined;
  private opening: Promise<WireguardDevice> | undefined;
  private id: TunnelIdentity | undefined;
  private configured = '';
  private peers: TunnelPeer[] = [];

  constructor(
    private readonly host: Rtnl,
    private readonly dir: string,
    private readonly underlayMtu: () => number,
    private readonly log: Logger,
  ) {}

  get ip(): string | undefined {
    return this.id?.ip;
  }
  get up(): boolean {
    return !!this.dev;
  }
  get mtu(): number {
    return this.underlayMtu() - WIREGUARD_OVERHEAD;
  }

  /** Ends a copy a previous run left when this one adopts nothing (a fresh start). */
  static reap(dir: string, log?: Logger): Promise<void> {
    return WireguardDevice.reap(dir, TUNNEL_IFNAME, log);
  }

  /** This node's address and key; a new key takes effect at once (rotation: the peers follow once told). */
  async setIdentity(id: TunnelIdentity): Promise<void> {
    this.id = id;
    for (const w of this.waiting.splice(0)) w();
    if (this.dev) await this.configure(this.dev);
  }

  private readonly waiting: (() => void)[] = [];
  /** A session's welcome brings the address; its first assignments may come a moment before it is set. */
  private async identity(): Promise<TunnelIdentity> {
    if (!this.id) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, IDENTITY_WAIT_MS);
        this.waiting.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    if (!this.id) throw new VxError('this node has no WireGuard tunnel address yet (its manager gives one when the node connects): try again', 503);
    return this.id;
  }

  /** The interface, started (or adopted) and configured; encrypted networks need it first. */
  async ensure(): Promise<WireguardDevice> {
    if (this.dev) return this.dev;
    await this.identity();
    if (this.dev) return this.dev;
    this.opening ??= (async () => {
      const dev = await WireguardDevice.open(TUNNEL_IFNAME, this.dir, this.log);
      try {
        await this.configure(dev);
        await this.setPeersOn(dev);
      } catch (e) {
        await dev.stop();
        throw e;
      }
      this.dev = dev;
      return dev;
    })().finally(() => (this.opening = undefined));
    return this.opening;
  }

  private async configure(dev: WireguardDevice): Promise<void> {
    const id = this.id!;
    const key = `${id.ip} ${id.privateKey}`;
    const link = await this.host.mustGetLink(TUNNEL_IFNAME);
    if (key !== this.configured) {
      await dev.configure(id.privateKey, WIREGUARD_PORT);
      // The address's prefix is the pool's: every peer's tunnel address is on-link through the interface.
      const pool = parseCidr(TUNNEL_POOL);
      for (const a of await this.host.getAddresses()) if (a.index === link.index && a.ip !== id.ip) await this.host.deleteAddress(link.index, a.ip, a.prefix);
      await this.host.replaceAddress(link.index, id.ip, pool.prefix);
      this.configured = key;
    }
    if (link.mtu !== this.mtu || !link.up) await this.host.setLink(link.index, { mtu: this.mtu, up: true });
  }

  /** The peers are exactly these (nodes sharing an encrypted network with this one). */
  async setPeers(peers: TunnelPeer[]): Promise<void> {
    this.peers = peers;
    if (this.dev) await this.setPeersOn(this.dev);
  }

  private async setPeersOn(dev: WireguardDevice): Promise<void> {
    const want: WgPeer[] = this.peers.map((p) => ({ publicKey: p.publicKey, endpoint: `${p.addr}:${WIREGUARD_PORT}`, allowedIp: `${p.tunnelIp}/32` }));
    const n = await dev.setPeers(want);
    if (n) this.log.debug('wireguard peers set', { changed: n, peers: want.length });
  }

  /** Reads back and repairs: the process alive, the address, the peer list (the reconcile timer). */
  async reconcile(): Promise<void> {
    const dev = this.dev;
    if (!dev) return;
    try {
      await this.configure(dev);
      await this.setPeersOn(dev);
    } catch (e) {
      this.log.warn('the WireGuard tunnel failed its check: starting it again', { error: errorMessage(e) });
      this.dev = undefined;
      this.configured = '';
      await dev.stop().catch(() => undefined);
      await this.ensure().catch((x: unknown) => this.log.error('could not start the WireGuard tunnel again', { error: errorMessage(x) }));
    }
  }

  /** Peers with their endpoint, last handshake and bytes, for inspect; undefined while no tunnel runs. */
  async state(): Promise<(WgDeviceState & { ip: string; peerNodes: TunnelPeer[] }) | undefined> {
    if (!this.dev || !this.id) return undefined;
    return { ...(await this.dev.state()), ip: this.id.ip, peerNodes: this.peers };
  }

  /** Ends the process and its interface (leaving the swarm). */
  async stop(): Promise<void> {
    const dev = this.dev ?? (await this.opening?.catch(() => undefined));
    this.dev = undefined;
    this.configured = '';
    this.peers = [];
    await dev?.stop();
  }

  /** Forgets the process without ending it (a restart adopts it). */
  release(): void {
    this.dev = undefined;
  }
}
