// A node's gossip: membership over UDP/TCP 7946 with the managers' keyring, the network-scoped
// tables, and the bridge from the overlay peer table to the data plane's desired peers.
import { errorMessage } from '../core/errors.js';
import { throttled, type Logger } from '../core/log.js';
import { realClock } from '../core/clock.js';
import { Keyring } from '../gossip/keyring.js';
import { Membership, type Member } from '../gossip/membership.js';
import { NetworkDB } from '../gossip/networkdb.js';
import { NetTransport } from '../gossip/transport.js';
import type { PeerSpec } from '../overlay/spec.js';

export const GOSSIP_PORT = 7946;
export const PEER_TABLE = 'overlay_peer_table';
export const ENDPOINT_TABLE = 'endpoint_table';

export interface EndpointRecord {
  name: string;
  ip: string;
  service?: string;
  task?: string;
  aliases?: string[];
  /** a node's routing mesh sandbox on ingress, with its MAC (the tasks mark its connections by it) */
  sbox?: boolean;
  mac?: string;
}

export class NodeGossip {
  readonly ml: Membership;
  readonly db: NetworkDB;
  private readonly pending = new Set<string>();
  private rejoinTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly transport: NetTransport,
    readonly keyring: Keyring,
    private readonly log: Logger,
    private readonly seeds: () => string[],
    /** called with a network's remote peers whenever its peer table changes */
    private readonly onPeers: (nid: string, peers: PeerSpec[]) => void,
    nodeId: string,
    hostname: string,
  ) {
    this.ml = new Membership({ name: nodeId, transport, clock: realClock, keyring, meta: { hostname }, log });
    this.db = new NetworkDB(this.ml, realClock);
    const dropped = throttled(this.log, 'gossip packets dropped');
    this.ml.on('rejected', (why: string) => dropped({ why, total: this.ml.stats.rejected }));
    const refused = throttled(this.log, 'gossip streams refused');
    transport.onRefused = (why) => refused({ why, total: transport.streamsRefused });
    for (const ev of ['join', 'dead', 'leave'] as const) this.ml.on(ev, (m: Member) => this.log.info(`gossip member ${ev}`, { node: m.name, addr: m.addr }));
    this.db.on('event', (e: { table: string; nid: string }) => {
      if (e.table === PEER_TABLE) this.schedulePeers(e.nid);
    });
  }

  static async start(o: {
    ip: string;
    port?: number;
    nodeId: string;
    hostname: string;
    keys: string[];
    seeds: () => string[];
    onPeers: (nid: string, peers: PeerSpec[]) => void;
    log: Logger;
  }): Promise<NodeGossip> {
    const keyring = new Keyring(o.keys.map((k) => Buffer.from(k, 'base64')));
    const transport = await NetTransport.listen(o.ip, o.port ?? GOSSIP_PORT, keyring);
    const g = new NodeGossip(transport, keyring, o.log, o.seeds, o.onPeers, o.nodeId, o.hostname);
    g.ml.start();
    g.db.start();
    await g.rejoin();
    // Alone (e.g. the manager restarted while we were up, or we came up first): keep knocking.
    g.rejoinTimer = setInterval(() => {
      if (g.ml.live().length <= 1) void g.rejoin();
    }, 2000);
    g.rejoinTimer.unref();
    return g;
  }

  async rejoin(): Promise<void> {
    const seeds = this.seeds().filter((s) => s !== this.transport.addr);
    if (!seeds.length) return;
    const n = await this.ml.join(seeds);
    if (!n) this.log.debug('gossip join found nobody yet', { seeds });
  }

  setKeys(keys: string[]): void {
    const list = keys.map((k) => Buffer.from(k, 'base64'));
    this.keyring.set(list, list[0]!);
  }

  private schedulePeers(nid: string): void {
    if (this.pending.has(nid)) return;
    this.pending.add(nid);
    setImmediate(() => {
      this.pending.delete(nid);
      this.pushPeers(nid);
    });
  }

  /** Remote endpoints of a network, from the peer table (our own entries excluded). */
  peers(nid: string): PeerSpec[] {
    return this.db
      .list(PEER_TABLE, nid)
      .filter((e) => e.owner !== this.ml.name)
      .map((e) => e.value as PeerSpec)
      .filter((p) => p && typeof p.ip === 'string' && typeof p.mac === 'string' && typeof p.vtep === 'string');
  }

  pushPeers(nid: string): void {
    try {
      this.onPeers(nid, this.peers(nid));
    } catch (e) {
      this.log.error('applying peers failed', { network: nid, error: errorMessage(e) });
    }
  }

  /** Publishes a local endpoint in its network's tables (joining the network first). */
  /** The endpoint is reachable (its peer entry) and, given `ep`, in its services' DNS and backends. */
  publish(nid: string, endpointId: string, peer: PeerSpec, ep: EndpointRecord | undefined): void {
    if (!this.db.inNetwork(nid)) this.db.joinNetwork(nid);
    this.db.put(PEER_TABLE, nid, endpointId, peer);
    if (ep) this.db.put(ENDPOINT_TABLE, nid, endpointId, ep);
    else this.db.remove(ENDPOINT_TABLE, nid, endpointId);
  }

  /** The endpoint leaves its services (DNS, load balancers) but stays reachable until unpublished. */
  withdraw(nid: string, endpointId: string): void {
    if (this.db.inNetwork(nid)) this.db.remove(ENDPOINT_TABLE, nid, endpointId);
  }

  unpublish(nid: string, endpointId: string, lastOnNetwork: boolean): void {
    if (!this.db.inNetwork(nid)) return;
    this.db.remove(PEER_TABLE, nid, endpointId);
    this.db.remove(ENDPOINT_TABLE, nid, endpointId);
    // Give the deletes a moment to spread before leaving the network's gossip.
    if (lastOnNetwork) setTimeout(() => this.db.inNetwork(nid) && this.leaveIfUnused(nid), 1000).unref();
  }

  private leaveIfUnused(nid: string): void {
    if (!this.db.list(PEER_TABLE, nid).some((e) => e.owner === this.ml.name)) this.db.leaveNetwork(nid);
  }

  /** Nodes known to have a network, with their underlay addresses (for Peers in inspect). */
  networkPeers(nid: string): Array<{ name: string; ip: string }> {
    const names = [...(this.db.inNetwork(nid) ? [this.ml.name] : []), ...this.db.peers(nid)];
    return names.map((n) => {
      const m = this.ml.get(n);
      return { name: m?.meta.hostname ?? n, ip: (m?.addr ?? '').replace(/:\d+$/, '') };
    });
  }

  async stop(announceLeave: boolean): Promise<void> {
    if (this.rejoinTimer) clearInterval(this.rejoinTimer);
    this.db.stop();
    if (announceLeave) await this.ml.leave(200);
    else this.ml.shutdown();
    await this.transport.close();
  }

  stats(): Record<string, unknown> {
    return {
      members: this.ml.all().map((m) => ({ name: m.name, hostname: m.meta.hostname, addr: m.addr, state: m.state, incarnation: m.incarnation })),
      membership: this.ml.stats,
      tables: this.db.stats,
      transport: { ...this.transport.stats, streamsRefused: this.transport.streamsRefused },
      keyringDropped: this.keyring.dropped,
      keys: this.keyring.list().length,
    };
  }
}
