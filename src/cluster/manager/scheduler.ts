// Placement: which node a new task runs on. Filters say why they reject a node, so a task that
// fits nowhere carries Docker's "no suitable node (...)" explanation instead of waiting silently.
import { InvalidArgumentError } from '../../core/errors.js';
import type { NodeRecord, NodeResources } from './types.js';

export interface Constraint {
  key: string;
  op: '==' | '!=';
  value: string;
}

const CONSTRAINT_RE = /^\s*([\w.-]+)\s*(==|!=)\s*(.+?)\s*$/;
const KEYS = /^(node\.(id|hostname|role|platform\.os|platform\.arch)|node\.labels\.[\w.-]+|engine\.labels\.[\w.-]+)$/;

export function parseConstraint(s: string): Constraint {
  const m = CONSTRAINT_RE.exec(s);
  if (!m) throw new InvalidArgumentError(`invalid constraint "${s}": expected <key>==<value> or <key>!=<value>`);
  const key = m[1]!;
  if (!KEYS.test(key))
    throw new InvalidArgumentError(
      `invalid constraint "${s}": unknown key ${key} (node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<name>)`,
    );
  return { key, op: m[2] as '==' | '!=', value: m[3]! };
}

function nodeValue(n: NodeRecord, key: string): string | undefined {
  switch (key) {
    case 'node.id':
      return n.id;
    case 'node.hostname':
      return n.hostname;
    case 'node.role':
      return n.role;
    case 'node.platform.os':
      return 'linux';
    case 'node.platform.arch':
      return 'x86_64';
  }
  if (key.startsWith('node.labels.')) return n.labels[key.slice('node.labels.'.length)];
  return undefined;
}

export function matches(n: NodeRecord, cs: Constraint[]): boolean {
  return cs.every((c) => {
    const v = nodeValue(n, c.key);
    // Docker compares case-insensitively, and a missing label never equals anything.
    const eq = v !== undefined && v.toLowerCase() === c.value.toLowerCase();
    return c.op === '==' ? eq : !eq;
  });
}

export interface Load {
  /** live tasks of the service being placed, per node */
  service: Map<string, number>;
  /** live tasks of every service, per node */
  total: Map<string, number>;
  /** host-mode ports held on each node by tasks not yet ended ("tcp/8081") */
  hostPorts?: Map<string, Set<string>>;
  /** what live tasks reserve on each node */
  reserved?: Map<string, NodeResources>;
}

export type Placement = { nodeId: string } | { error: string };

/** Fewest tasks of this service first, then fewest tasks overall, then node ID for a stable order. */
/**
 * `ports`: the host-mode ports the task publishes, which must be free on its node; `maxPerNode`:
 * at most that many live tasks of the service on one node (0: no limit).
 */
/**
 * `spread`: node attributes (node.labels.zone, outermost first) whose values should hold the
 * service's tasks evenly, as Docker's spread preferences: a node's group with fewer of them first.
 */
/** `reserve`: what the task reserves; a node that told its resources must have that much unreserved. */
export function place(
  nodes: NodeRecord[],
  constraints: Constraint[],
  load: Load,
  ports: string[] = [],
  maxPerNode = 0,
  spread: string[] = [],
  reserve: Partial<NodeResources> = {},
): Placement {
  let short = 0;
  const fits = (n: NodeRecord): boolean => {
    if (!n.resources || (!reserve.nanoCpus && !reserve.memoryBytes)) return true;
    const used = load.reserved?.get(n.id) ?? { nanoCpus: 0, memoryBytes: 0 };
    return used.nanoCpus + (reserve.nanoCpus ?? 0) <= n.resources.nanoCpus && used.memoryBytes + (reserve.memoryBytes ?? 0) <= n.resources.memoryBytes;
  };
  let unavailable = 0;
  let unmatched = 0;
  let busy = 0;
  let full = 0;
  const fit: NodeRecord[] = [];
  for (const n of nodes) {
    if (n.state !== 'ready' || n.availability !== 'active') unavailable++;
    else if (!matches(n, constraints)) unmatched++;
    else if (ports.some((p) => load.hostPorts?.get(n.id)?.has(p))) busy++;
    else if (maxPerNode > 0 && (load.service.get(n.id) ?? 0) >= maxPerNode) full++;
    else if (!fits(n)) short++;
    else fit.push(n);
  }
  if (fit.length === 0) {
    const why: string[] = [];
    if (unmatched) why.push(`scheduling constraints not satisfied on ${unmatched} node${unmatched === 1 ? '' : 's'}`);
    if (busy) why.push(`host-mode port already in use on ${busy} node${busy === 1 ? '' : 's'}`);
    if (full) why.push(`max replicas per node limit exceed`);
    if (short) why.push(`insufficient resources on ${short} node${short === 1 ? '' : 's'}`);
    if (unavailable) why.push(`${unavailable} node${unavailable === 1 ? '' : 's'} not available for new tasks`);
    return { error: `no suitable node (${why.join('; ') || 'no nodes in the swarm'})` };
  }
  // A group is the nodes sharing the values of every descriptor up to that level (a node without the
  // attribute is in the group of those without it); its count is the service's live tasks there.
  const groupCounts = (n: NodeRecord): number[] =>
    spread.map((_, level) => {
      const path = (x: NodeRecord): string => JSON.stringify(spread.slice(0, level + 1).map((d) => nodeValue(x, d) ?? null));
      const mine = path(n);
      return nodes.filter((x) => path(x) === mine).reduce((sum, x) => sum + (load.service.get(x.id) ?? 0), 0);
    });
  const key = (n: NodeRecord): number[] => [...groupCounts(n), load.service.get(n.id) ?? 0, load.total.get(n.id) ?? 0];
  fit.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i]! - kb[i]!;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
  return { nodeId: fit[0]!.id };
}
