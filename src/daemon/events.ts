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
    const known = new Map<string, Record<string, string>>();
    const attrsOf = (c: StoreChange): Record<string, string> | undefined => {
      if (c.coll === 'services') {
        const s = store.getService(c.id);
        return s && { name: s.spec.name };
      }
      if (c.coll === 'nodes') {
        const n = store.getNode(c.id);
        return n && { name: n.hostname, state: n.state, availability: n.availability };
      }
      if (c.coll === 'networks') {
        const n = store.getNetwork(c.id);
        return n && { name: n.name, type: n.driver };
      }
      return undefined;
    };
    const type = { services: 'service', nodes: 'node', networks: 'network' } as const;
    for (const coll of ['services', 'nodes', 'networks'] as const)
      for (const id of (coll === 'services' ? store.listServices() : coll === 'nodes' ? store.listNodes() : store.listNetworks()).map((x) => x.id))
        known.set(`${coll}/${id}`, attrsOf({ coll, id, deleted: false }) ?? {});
    const onChange = (changes: StoreChange[]): void => {
      for (const c of changes) {
        if (c.coll !== 'services' && c.coll !== 'nodes' && c.coll !== 'networks') continue;
        const key = `${c.coll}/${c.id}`;
        const before = known.get(key);
        const now = c.deleted ? undefined : attrsOf(c);
        if (now) known.set(key, now);
        else known.delete(key);
        if (!before && !now) continue;
        // A node's heartbeat state is not news unless it moved (Docker reports state changes as updates).
        if (before && now && c.coll === 'nodes' && JSON.stringify(before) === JSON.stringify(now)) continue;
        this.add(type[c.coll], !before ? 'create' : !now ? 'remove' : 'update', c.id, now ?? before ?? {}, 'swarm');
      }
    };
    store.on('change', onChange);
    return () => store.off('change', onChange);
  }
}
