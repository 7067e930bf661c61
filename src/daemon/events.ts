// Docker's event stream (`docker events`): what happened on this node (containers, scope local) and,
// on a manager, in the swarm (services, nodes, networks, scope swarm: every manager sees them, from
// its own store's watch). The last MAX_EVENTS are kept for --since.
import { EventEmitter } from 'node:events';
import type { Store, StoreChange } from '../cluster/manager/store.js';

/** One event (api/ gives it Docker's EventMessage shape). */
export interface EngineEvent {
  type: 'container' | 'service' | 'node' | 'network';
  action: string;
  id: string;
  attributes: Record<string, string>;
  scope: 'local' | 'swarm';
  /** nanoseconds since the epoch (millisecond resolution) */
  timeNano: number;
}

export const MAX_EVENTS = 1000;

export class EventLog extends EventEmitter {
  private readonly kept: EngineEvent[] = [];
  /** the swarm's objects as last seen (attributes and version), across watches */
  private readonly known = new Map<string, { attrs: Record<string, string>; version: number }>();
  private watched = false;

  add(type: EngineEvent['type'], action: string, id: string, attributes: Record<string, string>, scope: EngineEvent['scope']): void {
    const ev: EngineEvent = { type, action, id, attributes, scope, timeNano: Date.now() * 1e6 };
    this.kept.push(ev);
    if (this.kept.length > MAX_EVENTS) this.kept.shift();
    this.emit('event', ev);
  }

  /** Kept events from `sinceNano` up to `untilNano` (inclusive). */
  between(sinceNano: number, untilNano = Infinity): EngineEvent[] {
    return this.kept.filter((e) => e.timeNano >= sinceNano && e.timeNano <= untilNano);
  }

  /**
   * A manager's swarm events, from its store's watch: a service, node or network that appears is
   * created, one that changes is updated, one that goes is removed. Returns the unsubscribe.
   */
  watchSwarm(store: Store): () => void {
    const type = { services: 'service', nodes: 'node', networks: 'network' } as const;
    type Coll = keyof typeof type;
    // Kept across watches: a manager whose control plane restarted reports what changed meanwhile.
    const known = this.known;
    const current = (coll: Coll, id: string): { attrs: Record<string, string>; version: number } | undefined => {
      if (coll === 'services') {
        const s = store.getService(id);
        return s && { attrs: { name: s.spec.name }, version: s.version };
      }
      if (coll === 'nodes') {
        const n = store.getNode(id);
        return n && { attrs: { name: n.hostname, state: n.state, availability: n.availability }, version: n.version };
      }
      const n = store.getNetwork(id);
      return n && { attrs: { name: n.name, type: n.driver }, version: n.version };
    };
    const ids = (coll: Coll): string[] =>
      (coll === 'services' ? store.listServices() : coll === 'nodes' ? store.listNodes() : store.listNetworks()).map((x) => x.id);
    const seen = (coll: Coll, id: string): void => {
      const key = `${coll}/${id}`;
      const before = known.get(key);
      const now = current(coll, id);
      if (now) known.set(key, now);
      else known.delete(key);
      if (!before && !now) return;
      if (before && now && before.version === now.version) return;
      // A node's heartbeat state is not news unless it moved (Docker reports state changes as updates).
      if (before && now && coll === 'nodes' && JSON.stringify(before.attrs) === JSON.stringify(now.attrs)) return;
      this.add(type[coll], !before ? 'create' : !now ? 'remove' : 'update', id, (now ?? before)!.attrs, 'swarm');
    };
    const onChange = (changes: StoreChange[]): void => {
      for (const c of changes) if (c.coll in type) seen(c.coll as Coll, c.id);
    };
    // The cache was loaded again (its watch broke): what changed meanwhile is found by comparing.
    const onReset = (): void => {
      for (const coll of Object.keys(type) as Coll[]) {
        const now = new Set(ids(coll));
        for (const id of now) seen(coll, id);
        for (const key of [...known.keys()]) if (key.startsWith(`${coll}/`) && !now.has(key.slice(coll.length + 1))) seen(coll, key.slice(coll.length + 1));
      }
    };
    if (this.watched) onReset();
    else for (const coll of Object.keys(type) as Coll[]) for (const id of ids(coll)) known.set(`${coll}/${id}`, current(coll, id)!);
    this.watched = true;
    store.on('change', onChange);
    store.on('reset', onReset);
    return () => {
      store.off('change', onChange);
      store.off('reset', onReset);
    };
  }
}
