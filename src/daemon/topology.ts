// The overlay as the kernel holds it, node by node: what the topology page draws and what
// `vxswarm explain path` walks. Each node reads its own kernel (the reconciler's read-back) and
// answers its peers' requests for it over gossip's encrypted stream transport, so a page on any
// node shows every node without another port or a trip through the managers.
import { errorMessage } from '../core/errors.js';
import type { NodeGossip } from './gossip.js';
import { PEER_TABLE } from './gossip.js';
import type { NetworkView } from '../overlay/network.js';
import type { UnderlayView } from '../overlay/host.js';

export interface ContainerView {
  id: string;
  name: string;
  netns: string;
  status: string;
  service?: string;
  taskId?: string;
}

/** Which gossip entry asked for a peer's kernel entries: the peer table's key and the node that wrote it. */
export interface PeerSource {
  key: string;
  owner: string;
  ownerHost: string;
}

export interface NodeTopology {
  /** tunnelIp: its address on the encrypted networks' WireGuard tunnel, once it has one */
  node: { id: string; hostname: string; role: string; addr: string; tunnelIp?: string };
  underlay?: UnderlayView;
  networks: (NetworkView & { name: string; sources: Record<string, PeerSource> })[];
  containers: ContainerView[];
  members: { id: string; hostname: string; addr: string; state: string }[];
  /** published ports as programmed: the node's own table (port → its ingress sandbox) and the sandbox's (→ tasks) */
  mesh?: MeshView;
  at: string;
}

export interface MeshView {
  sboxNetns: string;
  node: Record<string, { to: string[]; port: number }>;
  sbox: Record<string, { to: string[]; port: number }>;
}

export type NodeEntry = NodeTopology | { node: { id: string; hostname: string; addr: string; tunnelIp?: string }; error: string };

export interface ClusterTopology {
  /** the node that answered, first */
  nodes: NodeEntry[];
  at: string;
}

export const TOPOLOGY_REQUEST = 'topology';

export interface TopologySource {
  node(): NodeTopology['node'] | undefined;
  underlay(): Promise<UnderlayView | undefined>;
  networks(): { id: string; name: string; view: () => Promise<NetworkView> }[];
  containers(): ContainerView[];
  mesh(): MeshView | undefined;
  gossip(): NodeGossip | undefined;
}

/** This node's topology, read from its kernel now. */
export async function nodeTopology(src: TopologySource): Promise<NodeTopology | undefined> {
  const node = src.node();
  if (!node) return undefined;
  const g = src.gossip();
  const hostOf = (id: string): string => (id === node.id ? node.hostname : (g?.ml.get(id)?.meta.hostname ?? id));
  const networks: NodeTopology['networks'] = [];
  for (const n of src.networks()) {
    const view = await n.view();
    const sources: Record<string, PeerSource> = {};
    if (g?.db.inNetwork(n.id))
      for (const e of g.db.list(PEER_TABLE, n.id)) {
        const ip = (e.value as { ip?: unknown } | undefined)?.ip;
        if (typeof ip === 'string') sources[ip] = { key: e.key, owner: e.owner, ownerHost: hostOf(e.owner) };
      }
    networks.push({ ...view, name: n.name, sources });
  }
  return {
    node,
    ...(await src.underlay().then((u) => (u ? { underlay: u } : {}))),
    networks,
    containers: src.containers(),
    ...(src.mesh() ? { mesh: src.mesh()! } : {}),
    members: (g?.ml.all() ?? []).map((m) => ({ id: m.name, hostname: m.meta.hostname ?? m.name, addr: m.addr.replace(/:\d+$/, ''), state: m.state })),
    at: new Date().toISOString(),
  };
}

/** Every node's topology: ours, then each live gossip member's, asked for over gossip (an unreachable one says why). */
export async function clusterTopology(src: TopologySource, timeoutMs = 3000): Promise<ClusterTopology> {
  const self = await nodeTopology(src);
  const g = src.gossip();
  const nodes: NodeEntry[] = self ? [self] : [];
  const others = (g?.ml.all() ?? []).filter((m) => m.name !== self?.node.id && (m.state === 'alive' || m.state === 'suspect'));
  const answers = await Promise.all(
    others.map(async (m): Promise<NodeEntry> => {
      const node = { id: m.name, hostname: m.meta.hostname ?? m.name, addr: m.addr.replace(/:\d+$/, '') };
      try {
        const r = (await g!.ml.requestUser(m.name, { k: TOPOLOGY_REQUEST }, timeoutMs)) as NodeTopology | null;
        return r?.node ? r : { node, error: 'no topology in its answer' };
      } catch (e) {
        return { node, error: errorMessage(e) };
      }
    }),
  );
  nodes.push(...answers.sort((a, b) => a.node.hostname.localeCompare(b.node.hostname)));
  return { nodes, at: new Date().toISOString() };
}

export const isTopology = (e: NodeEntry | undefined): e is NodeTopology => !!e && !('error' in e);
