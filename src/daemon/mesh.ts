// A node's part of the routing mesh and its host-mode ports: what its own namespace, its ingress
// sandbox and each of its ingress tasks should hold, worked out from the manager's port list and
// the ingress network's gossip endpoint table (no manager is asked per change), and kept so.
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { MeshPort } from '../cluster/manager/dispatcher.js';
import type { PortConfig } from '../cluster/manager/types.js';
import { IngressReplies, portKey, portsCodec, type PortSpec, type Sbox } from '../overlay/mesh.js';
import { NftTables } from '../overlay/nft-tables.js';
import type { EndpointRecord } from './gossip.js';

/** the sandbox's leg on docker_gwbridge, where the node's table sends ingress connections */
export const SBOX_GW_IF = 'gw0';

export interface MeshInput {
  /** every ingress port of the swarm (from the manager) */
  ports: MeshPort[];
  /** this node's sandbox's address on docker_gwbridge, once it is up */
  sboxGw?: string;
  /** the ingress network's endpoint table: tasks (with their service) and every node's sandbox */
  ingress: EndpointRecord[];
  /** local tasks publishing host-mode ports, with their address on the local bridge */
  hostTasks: { ip: string; ports: PortConfig[] }[];
}

export interface MeshWant {
  node: PortSpec;
  sbox: PortSpec;
  sboxes: Sbox[];
}

/** What the node's namespace, its sandbox and its ingress tasks should hold. */
export function meshWant(i: MeshInput): MeshWant {
  const node: PortSpec = new Map();
  const sbox: PortSpec = new Map();
  for (const p of i.ports) {
    const key = portKey(p.protocol, p.publishedPort);
    const to = [...new Set(i.ingress.filter((e) => e.service === p.service && !e.sbox).map((e) => e.ip))].sort();
    sbox.set(key, { to, port: p.targetPort });
    // Until the sandbox is up, the port is not taken on this node.
    if (i.sboxGw) node.set(key, { to: [i.sboxGw], port: p.publishedPort });
  }
  for (const t of i.hostTasks)
    for (const p of t.ports) {
      const key = portKey(p.protocol, p.publishedPort);
      // An ingress port of the same number is every node's (the manager refuses the clash).
      if (!node.has(key)) node.set(key, { to: [t.ip], port: p.targetPort });
    }
  const sboxes = i.ingress
    .filter((e) => e.sbox && typeof e.mac === 'string')
    .map((e) => ({ ip: e.ip, mac: e.mac! }))
    .sort((a, b) => a.ip.localeCompare(b.ip));
  return { node, sbox, sboxes };
}

export class NodeMesh {
  readonly node: NftTables<PortSpec>;
  readonly sbox: NftTables<PortSpec>;
  readonly replies: IngressReplies;

  constructor(
    private readonly sboxNetns: string,
    private readonly log: Logger,
  ) {
    this.node = new NftTables(portsCodec({ kind: 'node' }), log);
    this.sbox = new NftTables(portsCodec({ kind: 'sbox', iif: SBOX_GW_IF }), log);
    this.replies = new IngressReplies(log);
  }

  /** Programs `want`; `legs`: the local tasks on ingress, by namespace, with their ingress interface. */
  apply(want: MeshWant, sboxUp: boolean, legs: { netns: string; ifname: string }[]): void {
    const warn = (what: string) => (e: unknown) => this.log.warn(`programming ${what} failed`, { error: errorMessage(e) });
    void this.node.set('', want.node).catch(warn("the node's published ports"));
    if (sboxUp) void this.sbox.set(this.sboxNetns, want.sbox).catch(warn('the ingress sandbox'));
    for (const l of legs) void this.replies.set(l.netns, l.ifname, want.sboxes).catch(warn(`ingress replies in ${l.netns}`));
  }

  forgetTask(netns: string): void {
    this.replies.forget(netns);
  }

  forgetSbox(): void {
    this.sbox.forget(this.sboxNetns);
  }

  async reconcile(): Promise<void> {
    await this.node.reconcile();
    await this.sbox.reconcile();
    await this.replies.reconcile();
  }

  stats(): Record<string, number> {
    return { Repairs: this.node.repairs + this.sbox.repairs + this.replies.repairs, Reconciles: this.node.reconciles };
  }
}
