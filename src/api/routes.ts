// Engine API routes served by the daemon: system, swarm, nodes, networks, and vxswarm's
// endpoint extension. Handlers translate between Docker's JSON and the daemon's calls.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import os from 'node:os';
import { VxError } from '../core/errors.js';
import { API_VERSION, VERSION } from '../core/version.js';
import type { Daemon } from '../daemon/daemon.js';
import type { NetworkRecord } from '../cluster/manager/types.js';
import type { EngineEvent } from '../daemon/events.js';
import {
  BadRequest,
  filterValues,
  refuseChanged,
  refuseUnknown,
  requiredVersion,
  labelMatch,
  obj,
  optArr,
  optBool,
  optInt,
  optStr,
  optStrArr,
  optStrMap,
  parseFilters,
  qBool,
} from './check.js';
import { Router, serverHeader } from './http.js';
import { addWorkloadRoutes } from './routes-workloads.js';
import { clusterJson, eventJson, localNetworkJson, networkJson, nodeJson, swarmJson, swarmSpec, versionJson, type ManagerView } from './shapes.js';
import { DEFAULT_CERT_DAYS } from '../cluster/manager/ca.js';
import { ENCRYPTED_OPTION } from '../cluster/manager/manager.js';

/** what a new swarm runs with */
const DEFAULT_CLUSTER_SETTINGS = { certDays: DEFAULT_CERT_DAYS };

function swarmHeader(d: Daemon): string {
  const s = d.swarm;
  return s ? `active/${s.role}` : 'inactive';
}

export function buildRouter(d: Daemon): Router {
  const r = new Router(() => ({
    'Api-Version': API_VERSION,
    'Docker-Experimental': 'false',
    Ostype: 'linux',
    Server: serverHeader(),
    Swarm: swarmHeader(d),
    'Cache-Control': 'no-cache, no-store, must-revalidate',
    Pragma: 'no-cache',
  }));

  const view = (): ManagerView => {
    const st = d.controlStatus();
    const store = d.control?.store;
    // Reachable: the node's session is up (the leader sees it) or it is this manager.
    return { leader: st?.leader ?? '', reachable: (id) => id === st?.id || store?.getNode(id)?.state === 'ready' };
  };

  // ---- system ----
  r.on('GET', '/_ping', () => ({ text: 'OK' }));
  r.on('GET', '/version', () => ({ json: versionJson() }));
  r.on('GET', '/info', () => ({ json: infoJson(d) }));
  // docker events: the kept events since --since, then live ones until --until or the client goes.
  r.on('GET', '/events', (c) => {
    const f = parseFilters(c.query.get('filters'), ['type', 'event', 'container', 'service', 'node', 'network', 'scope', 'label']);
    filterValues(f, 'type', ['container', 'service', 'node', 'network', 'image', 'volume', 'daemon', 'plugin', 'secret', 'config']);
    filterValues(f, 'scope', ['local', 'swarm']);
    const when = (k: string): number | undefined => {
      const v = c.query.get(k);
      if (!v) return undefined;
      if (!/^\d+(\.\d{1,9})?$/.test(v)) throw new BadRequest(`invalid ${k} "${v}": seconds since the epoch, as the docker CLI sends`);
      const [sec, frac = ''] = v.split('.');
      return Number(sec) * 1e9 + Number(frac.padEnd(9, '0'));
    };
    const since = when('since');
    const until = when('until');
    const objectFilter = (e: EngineEvent): boolean => {
      for (const k of ['container', 'service', 'node', 'network'] as const) {
        const want = f[k];
        if (want && (e.type !== k || !want.some((x) => e.id.startsWith(x) || e.attributes.name === x))) return false;
      }
      return true;
    };
    const match = (e: EngineEvent): boolean =>
      (!f.type || f.type.includes(e.type)) &&
      (!f.event || f.event.includes(e.action)) &&
      (!f.scope || f.scope.includes(e.scope)) &&
      (!f.label || f.label.every((l) => labelMatch(e.attributes, l))) &&
      objectFilter(e);
    const res = c.res;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    const send = (e: EngineEvent): void => void res.write(`${JSON.stringify(eventJson(e))}\n`);
    for (const e of since !== undefined ? d.events.between(since, until) : []) if (match(e)) send(e);
    const nowNano = Date.now() * 1e6;
    if (until !== undefined && until <= nowNano) {
      res.end();
      return { status: 200 };
    }
    const onEvent = (e: EngineEvent): void => {
      if (match(e)) send(e);
    };
    d.events.on('event', onEvent);
    const stop = (): void => {
      d.events.off('event', onEvent);
      clearTimeout(timer);
      res.end();
    };
    const timer = until !== undefined ? setTimeout(stop, (until - nowNano) / 1e6) : undefined;
    c.req.once('close', stop);
    res.once('close', stop);
    return { status: 200 };
  });

  // ---- swarm ----
  r.on('POST', '/swarm/init', async (c) => {
    const b = obj(await c.body(), 'swarm init request');
    refuseUnknown(b, '', ['ListenAddr', 'AdvertiseAddr', 'DataPathPort', 'DefaultAddrPool', 'SubnetSize', 'ForceNewCluster', 'Spec'], {
      Availability: 'active',
    });
    refuseChanged(b.Spec, swarmSpec(DEFAULT_CLUSTER_SETTINGS), 'Spec');
    const pool = optStrArr(b, 'DefaultAddrPool');
    const id = await d.init({
      listenAddr: optStr(b, 'ListenAddr'),
      advertiseAddr: optStr(b, 'AdvertiseAddr'),
      dataPathPort: optInt(b, 'DataPathPort'),
      defaultAddrPool: pool,
      subnetSize: optInt(b, 'SubnetSize'),
      forceNewCluster: optBool(b, 'ForceNewCluster') ?? false,
    });
    return { json: id };
  });
  r.on('POST', '/swarm/join', async (c) => {
    const b = obj(await c.body(), 'swarm join request');
    refuseUnknown(b, '', ['ListenAddr', 'AdvertiseAddr', 'RemoteAddrs', 'JoinToken', 'Availability']);
    const token = optStr(b, 'JoinToken');
    if (!token) throw new BadRequest('invalid join token: a join token is required');
    await d.join({
      remoteAddrs: optStrArr(b, 'RemoteAddrs') ?? [],
      joinToken: token,
      advertiseAddr: optStr(b, 'AdvertiseAddr') || undefined,
      listenAddr: optStr(b, 'ListenAddr'),
      availability: optStr(b, 'Availability') || undefined,
    });
    return { status: 200 };
  });
  r.on('POST', '/swarm/leave', async (c) => {
    await d.leave(qBool(c.query, 'force'));
    return { status: 200 };
  });
  r.on('GET', '/swarm', () => {
    const m = d.requireManager();
    return { json: swarmJson(m.cluster(), m.joinTokens()) };
  });
  r.on('POST', '/swarm/update', async (c) => {
    const m = d.requireManager();
    const version = requiredVersion(c.query, 'swarm');
    if (version !== m.cluster().version) throw new VxError(`update out of sequence: swarm is at version ${m.cluster().version}`, 409);
    // The task history, the certificate lifetime and the heartbeat period change here, the join
    // tokens rotate; any other change is refused, not ignored.
    const cur = swarmSpec(m.cluster()) as { Orchestration: Record<string, unknown>; CAConfig: Record<string, unknown>; Dispatcher: Record<string, unknown> };
    const b = obj(await c.body(), 'swarm spec');
    const orch = obj(b.Orchestration, 'Orchestration');
    const ca = obj(b.CAConfig, 'CAConfig');
    const history = optInt(orch, 'TaskHistoryRetentionLimit');
    const expiry = optInt(ca, 'NodeCertExpiry');
    const disp = obj(b.Dispatcher, 'Dispatcher');
    const heartbeat = optInt(disp, 'HeartbeatPeriod');
    refuseChanged(
      {
        ...b,
        Orchestration: { ...orch, TaskHistoryRetentionLimit: cur.Orchestration.TaskHistoryRetentionLimit },
        CAConfig: { ...ca, NodeCertExpiry: cur.CAConfig.NodeCertExpiry },
        Dispatcher: { ...disp, HeartbeatPeriod: cur.Dispatcher.HeartbeatPeriod },
      },
      cur,
      'Spec',
    );
    const settings = {
      ...(history !== undefined && history !== cur.Orchestration.TaskHistoryRetentionLimit ? { taskHistory: history } : {}),
      ...(expiry && expiry !== cur.CAConfig.NodeCertExpiry ? { certDays: expiry / (24 * 3600 * 1e9) } : {}),
      ...(heartbeat && heartbeat !== cur.Dispatcher.HeartbeatPeriod ? { heartbeatMs: heartbeat / 1e6 } : {}),
    };
    if (Object.keys(settings).length) await m.updateSettings(settings);
    if (qBool(c.query, 'rotateManagerUnlockKey')) throw new BadRequest('rotateManagerUnlockKey is not supported yet: autolock is not implemented');
    if (qBool(c.query, 'rotateWorkerToken')) await m.rotateToken('worker');
    if (qBool(c.query, 'rotateManagerToken')) await m.rotateToken('manager');
    return { status: 200 };
  });

  addWorkloadRoutes(r, d);

  // ---- nodes ----
  r.on('GET', '/nodes', (c) => {
    const m = d.requireManager();
    const f = parseFilters(c.query.get('filters'), ['id', 'name', 'role', 'membership', 'label', 'node.label']);
    filterValues(f, 'role', ['manager', 'worker']);
    filterValues(f, 'membership', ['accepted', 'pending']);
    let list = m.listNodes();
    if (f.id) list = list.filter((n) => f.id!.some((x) => n.id.startsWith(x)));
    if (f.name) list = list.filter((n) => f.name!.some((x) => n.hostname.startsWith(x)));
    if (f.role) list = list.filter((n) => f.role!.includes(n.role));
    // every node in the store was accepted by its join token
    if (f.membership) list = list.filter(() => f.membership!.includes('accepted'));
    // `label` is the engine's labels (a daemon has none here), `node.label` the node's own
    if (f.label) list = list.filter(() => f.label!.every((l) => labelMatch({}, l)));
    if (f['node.label']) list = list.filter((n) => f['node.label']!.every((l) => labelMatch(n.labels, l)));
    const v = view();
    return { json: list.map((n) => nodeJson(n, v, m.ca.certPem)) };
  });
  r.on('GET', '/nodes/:id', (c) => {
    const m = d.requireManager();
    return { json: nodeJson(m.findNode(c.params[0]!), view(), m.ca.certPem) };
  });
  r.on('DELETE', '/nodes/:id', async (c) => {
    await d.requireManager().removeNode(c.params[0]!, qBool(c.query, 'force'));
    return { status: 200 };
  });
  r.on('POST', '/nodes/:id/update', async (c) => {
    const m = d.requireManager();
    const b = obj(await c.body(), 'node spec');
    await m.updateNode(c.params[0]!, requiredVersion(c.query, 'node'), {
      availability: optStr(b, 'Availability'),
      role: optStr(b, 'Role'),
      labels: optStrMap(b, 'Labels'),
    });
    return { status: 200 };
  });

  // ---- networks ----
  const netJson = (n: NetworkRecord, verbose = false): Record<string, unknown> => {
    const local = d.listEndpoints().filter((e) => e.networkId === n.id);
    const out = networkJson(n, local, networkPeers(d, n));
    if (verbose) {
      // Docker's map of the network's services: VIP and tasks, as this node knows them.
      const svcs = d.networkServices(n.id);
      out.Services = Object.fromEntries(
        svcs.map((x) => [
          x.service,
          {
            VIP: x.vip ?? '',
            Ports: [],
            LocalLBIndex: 0,
            Tasks: x.tasks.map((t) => ({ Name: t.name, EndpointID: t.endpointId, EndpointIP: t.ip, Info: { 'Host IP': t.hostIp } })),
          },
        ]),
      );
    }
    if (verbose && d.gossip) {
      // Diagnosis: what this node's gossip tables hold for the network (docker shows Services here).
      out.Tables = Object.fromEntries(
        ['overlay_peer_table', 'endpoint_table'].map((t) => [
          t,
          d
            .gossip!.db.dump(n.id)
            .filter((e) => e.table === t)
            .map((e) => ({ Key: e.key, Owner: e.owner, Value: e.value, LamportTime: e.ltime, Deleting: e.deleting })),
        ]),
      );
      const ov = d.overlayNetwork(n.id);
      if (ov)
        out.Overlay = {
          Sandbox: ov.sandbox,
          MTU: ov.mtu,
          Peers: ov.listPeers(),
          Repairs: ov.repairs,
          Reconciles: ov.reconciles,
          // this node's task namespaces' load balancers (all networks)
          LoadBalancers: { Repairs: d.lb.repairs, Reconciles: d.lb.reconciles },
          // this node's published ports, its mesh sandbox and its ingress tasks' reply routes
          ...(n.ingress ? { Mesh: d.meshStats() } : {}),
        };
    }
    return out;
  };
  r.on('GET', '/networks', (c) => {
    const filters = parseFilters(c.query.get('filters'), ['name', 'id', 'driver', 'scope', 'label']);
    const all = [
      ...d.localNetworks().map((n) => ({ name: n.name, id: n.id, driver: n.driver, scope: 'local', labels: {}, json: () => localNetworkJson(n) })),
      ...d.listNetworks().map((n) => ({ name: n.name, id: n.id, driver: n.driver, scope: 'swarm', labels: n.labels, json: () => netJson(n) })),
    ];
    let list = all;
    if (filters.label) list = list.filter((n) => filters.label!.every((l) => labelMatch(n.labels, l)));
    if (filters.name) list = list.filter((n) => filters.name!.some((f) => n.name.includes(f)));
    if (filters.id) list = list.filter((n) => filters.id!.some((f) => n.id.startsWith(f)));
    if (filters.driver) list = list.filter((n) => filters.driver!.includes(n.driver));
    if (filters.scope) list = list.filter((n) => filters.scope!.includes(n.scope));
    return { json: list.map((n) => n.json()) };
  });
  /** One of Docker's local networks, by name, ID or unique ID prefix. */
  const localNetwork = (ref: string): ReturnType<Daemon['localNetworks']>[number] | undefined => {
    const all = d.localNetworks();
    const exact = all.find((n) => n.name === ref || n.id === ref);
    if (exact) return exact;
    const byPrefix = ref.length >= 3 ? all.filter((n) => n.id.startsWith(ref)) : [];
    return byPrefix.length === 1 ? byPrefix[0] : undefined;
  };
  r.on('GET', '/networks/:id', async (c) => {
    const scope = c.query.get('scope');
    if (scope && !['swarm', 'local', 'global'].includes(scope)) throw new BadRequest(`invalid scope "${scope}"`);
    const local = scope === 'swarm' ? undefined : localNetwork(c.params[0]!);
    if (local) return { json: localNetworkJson(local) };
    if (scope === 'local') throw new VxError(`network ${c.params[0]} not found`, 404);
    const n = d.findNetwork(c.params[0]!);
    const verbose = qBool(c.query, 'verbose');
    const out = netJson(n, verbose);
    if (verbose && ENCRYPTED_OPTION in n.options) out.Encryption = tunnelJson(await d.tunnelState());
    return { json: out };
  });
  r.on('POST', '/networks/create', async (c) => {
    const b = obj(await c.body(), 'network create request');
    refuseUnknown(b, '', ['Name', 'Driver', 'Scope', 'IPAM', 'Internal', 'Attachable', 'Ingress', 'Options', 'Labels', 'EnableIPv6', 'CheckDuplicate'], {
      EnableIPv4: true,
    });
    const ipamIn = obj(b.IPAM, 'field IPAM');
    refuseUnknown(ipamIn, 'IPAM', ['Driver', 'Config']);
    for (const [i, x] of (optArr(ipamIn, 'Config') ?? []).entries())
      refuseUnknown(obj(x, `IPAM.Config[${i}]`), `IPAM.Config[${i}]`, ['Subnet', 'Gateway', 'IPRange']);
    const name = optStr(b, 'Name');
    if (!name) throw new BadRequest('network name is required');
    const ipam = obj(b.IPAM, 'field IPAM');
    const ipamDriver = optStr(ipam, 'Driver');
    if (ipamDriver && ipamDriver !== 'default') throw new BadRequest(`IPAM driver "${ipamDriver}" is not supported: only "default"`);
    const configs = (optArr(ipam, 'Config') ?? []).map((x, i) => {
      const o = obj(x, `IPAM.Config[${i}]`);
      return { subnet: optStr(o, 'Subnet') || undefined, gateway: optStr(o, 'Gateway') || undefined, ipRange: optStr(o, 'IPRange') || undefined };
    });
    if (optBool(b, 'EnableIPv6')) throw new BadRequest('IPv6 overlay networks are not supported yet');
    const scope = optStr(b, 'Scope');
    if (scope && scope !== 'swarm') throw new BadRequest(`scope "${scope}" is not supported: overlay networks are swarm-scoped`);
    // Checked before anything is written: a refused request changes nothing.
    if (optBool(b, 'Ingress')) throw new BadRequest('a second ingress network is not supported');
    const m = d.requireManager();
    const net = await m.createNetwork({
      name,
      driver: optStr(b, 'Driver'),
      attachable: optBool(b, 'Attachable'),
      internal: optBool(b, 'Internal'),
      ingress: false,
      labels: optStrMap(b, 'Labels'),
      options: optStrMap(b, 'Options'),
      subnets: configs,
    });
    return { status: 201, json: { Id: net.id, Warning: '' } };
  });
  // docker network prune: every network no service and no endpoint uses (never ingress, never
  // Docker's predefined local ones), as Docker's cluster prune, which skips those still in use.
  r.on('POST', '/networks/prune', async (c) => {
    const f = parseFilters(c.query.get('filters'), ['until', 'label', 'label!']);
    const until = f.until?.length ? pruneUntil(f.until[0]!) : undefined;
    const m = d.manager;
    const deleted: string[] = [];
    for (const n of m?.listNetworks() ?? []) {
      if (n.ingress || n.pendingDelete) continue;
      if (until !== undefined && Date.parse(n.createdAt) >= until) continue;
      if (f.label && !f.label.every((l) => labelMatch(n.labels, l))) continue;
      if (f['label!']?.some((l) => labelMatch(n.labels, l))) continue;
      try {
        await m!.removeNetwork(n.id);
        deleted.push(n.name);
      } catch (e) {
        if (!(e instanceof VxError && e.status === 409)) throw e;
      }
    }
    return { json: { NetworksDeleted: deleted } };
  });

  r.on('DELETE', '/networks/:id', async (c) => {
    const local = localNetwork(c.params[0]!);
    if (local) throw new VxError(`${local.name} is a pre-defined network and cannot be removed`, 403);
    await d.requireManager().removeNetwork(c.params[0]!);
    return { status: 204 };
  });

  // ---- vxswarm extension: gossip state for diagnosis ----
  r.on('GET', '/vxswarm/gossip', () => {
    if (!d.gossip) throw new VxError('gossip is not running on this node', 503);
    return { json: d.gossip.stats() };
  });
  r.on('POST', '/vxswarm/gossip/rotate-key', async (c) => {
    const step = c.query.get('step');
    if (step !== 'stage' && step !== 'switch') throw new BadRequest('step must be "stage" (add the new key) or "switch" (send with it)');
    return { json: { Keys: (await d.requireManager().rotateGossipKey(step)).length } };
  });

  // ---- vxswarm extension: the overlay as every node's kernel holds it, and a packet's path through it ----
  r.on('GET', '/vxswarm/topology', async () => ({ json: await d.clusterTopology() }));
  // This node's WireGuard key pair, new; its peers follow through the managers.
  r.on('POST', '/vxswarm/wireguard/rotate-key', async () => ({ json: { PublicKey: await d.rotateTunnelKey() } }));
  r.on('GET', '/vxswarm/wireguard', async () => ({ json: tunnelJson(await d.tunnelState()) }));
  r.on('GET', '/vxswarm/explain', async (c) => {
    const container = c.query.get('container');
    const target = c.query.get('target');
    if (!container || !target) throw new BadRequest('explain needs container and target (an address or a name)');
    return { json: await d.explain(container, target) };
  });

  // ---- vxswarm extension: endpoints attached through the control plane ----
  // Diagnosis: this manager's view of the control plane (leader, cache revision, etcd members).
  r.on('GET', '/vxswarm/control', () => {
    const st = d.controlStatus();
    if (!st) throw new VxError('this node is not a swarm manager', 404);
    return { json: st };
  });
  // The node's own endpoints; its mesh sandbox's shows in `network inspect ingress`.
  r.on('GET', '/vxswarm/endpoints', () => ({
    json: d
      .listEndpoints()
      .filter((e) => !e.sbox)
      .map(endpointJson),
  }));
  // Diagnosis: how long the daemon's event loop was held up (gossip probes and heartbeats share it).
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  r.on('GET', '/vxswarm/eventloop', (c) => {
    const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
    const out = { P50Ms: ms(loop.percentile(50)), P99Ms: ms(loop.percentile(99)), MaxMs: ms(loop.max), Samples: loop.count };
    if (qBool(c.query, 'reset')) loop.reset();
    return { json: out };
  });
  // Diagnosis: every address the managers have handed out, and to whom (a task, or a node's own endpoint).
  r.on('GET', '/vxswarm/attachments', () => {
    const m = d.requireManager();
    return {
      json: m.listAttachments().map((a) => ({
        Id: a.id,
        NetworkID: a.networkId,
        NodeID: a.nodeId,
        Name: a.name,
        IPAddress: a.ip,
        MacAddress: a.mac,
        Local: a.local ?? false,
      })),
    };
  });
  r.on('POST', '/vxswarm/endpoints', async (c) => {
    const b = obj(await c.body(), 'endpoint create request');
    const network = optStr(b, 'Network');
    if (!network) throw new BadRequest('Network is required');
    const ep = await d.createEndpoint(network, optStr(b, 'Name') || undefined);
    return { status: 201, json: endpointJson(ep) };
  });
  r.on('DELETE', '/vxswarm/endpoints/:id', async (c) => {
    await d.removeEndpoint(c.params[0]!);
    return { status: 204 };
  });
  return r;
}

function endpointJson(e: ReturnType<Daemon['listEndpoints']>[number]): Record<string, unknown> {
  return { Id: e.id, Name: e.name, Network: e.networkName, NetworkID: e.networkId, IPAddress: e.ip, MacAddress: e.mac, Netns: e.netns };
}

/** An encrypted network's tunnel on this node: WireGuard's own figures, per peer (`wg show`'s). */
function tunnelJson(t: Awaited<ReturnType<Daemon['tunnelState']>>): Record<string, unknown> {
  if (!t) return { Protocol: 'wireguard', Running: false };
  const byKey = new Map(t.peerNodes.map((p) => [p.publicKey, p]));
  return {
    Protocol: 'wireguard',
    Running: true,
    Interface: 'vxwg0',
    TunnelIP: t.ip,
    PublicKey: t.publicKey ?? '',
    ListenPort: t.listenPort,
    Peers: t.peers.map((p) => {
      const node = byKey.get(p.publicKey);
      return {
        Node: node?.nodeId ?? '',
        Name: node ? t.hostnames[node.nodeId] || '' : '',
        PublicKey: p.publicKey,
        Endpoint: p.endpoint,
        AllowedIP: p.allowedIp,
        LatestHandshake: p.lastHandshake?.toISOString() ?? '',
        RxBytes: p.rxBytes,
        TxBytes: p.txBytes,
      };
    }),
  };
}

/** Nodes that have the network: from gossip when it runs, else from the manager's attachments. */
function networkPeers(d: Daemon, n: NetworkRecord): Array<{ name: string; ip: string }> {
  if (d.gossip) return d.gossip.networkPeers(n.id);
  const m = d.manager;
  if (!m) {
    const s = d.swarm;
    return s && d.listEndpoints().some((e) => e.networkId === n.id) ? [{ name: d.hostname, ip: s.advertiseAddr }] : [];
  }
  const nodes = new Set(m.listAttachments({ networkId: n.id }).map((a) => a.nodeId));
  return m
    .listNodes()
    .filter((x) => nodes.has(x.id))
    .map((x) => ({ name: x.hostname, ip: x.addr }));
}

function infoJson(d: Daemon): Record<string, unknown> {
  const s = d.swarm;
  // Any manager answers from its replicated store; a worker knows only its managers' addresses.
  const store = d.control?.store;
  let swarm: Record<string, unknown> = { NodeID: '', NodeAddr: '', LocalNodeState: 'inactive', ControlAvailable: false, Error: '', RemoteManagers: null };
  if (s) {
    const managers = store
      ? store
          .listNodes()
          .filter((n) => n.role === 'manager')
          .map((n) => ({ NodeID: n.id, Addr: n.managerAddr ?? `${n.addr}:2377` }))
      : (s.managers ?? [s.managerAddr]).map((a) => ({ NodeID: '', Addr: a }));
    swarm = {
      NodeID: s.nodeId,
      NodeAddr: s.advertiseAddr,
      LocalNodeState: d.sessionConnected ? 'active' : 'pending',
      ControlAvailable: s.role === 'manager',
      Error: '',
      RemoteManagers: managers,
    };
    const c = store?.getCluster();
    if (store && c) {
      const nodes = store.listNodes();
      swarm.Nodes = nodes.length;
      swarm.Managers = nodes.filter((n) => n.role === 'manager').length;
      swarm.Cluster = clusterJson(c);
    }
  }
  const containers = d.runtime.list();
  const running = containers.filter((x) => x.status === 'running').length;
  return {
    ID: s?.nodeId ?? '',
    Containers: containers.length,
    ContainersRunning: running,
    ContainersPaused: 0,
    ContainersStopped: containers.length - running,
    Images: d.images.list().length,
    Driver: 'overlay',
    DriverStatus: [],
    Plugins: { Volume: [], Network: ['overlay'], Authorization: null, Log: [] },
    MemoryLimit: true,
    SwapLimit: false,
    CpuCfsPeriod: true,
    CpuCfsQuota: true,
    IPv4Forwarding: true,
    Debug: false,
    NFd: 0,
    NGoroutines: 0,
    SystemTime: new Date().toISOString(),
    LoggingDriver: 'json-file',
    CgroupDriver: 'cgroupfs',
    CgroupVersion: '2',
    NEventsListener: 0,
    KernelVersion: os.release(),
    OperatingSystem: 'vxswarm',
    OSVersion: '',
    OSType: 'linux',
    Architecture: 'x86_64',
    IndexServerAddress: '',
    RegistryConfig: null,
    NCPU: os.cpus().length,
    MemTotal: os.totalmem(),
    GenericResources: null,
    DockerRootDir: d.cfg.root,
    HttpProxy: '',
    HttpsProxy: '',
    NoProxy: '',
    Name: d.hostname,
    Labels: [],
    ExperimentalBuild: false,
    ServerVersion: VERSION,
    Runtimes: {},
    DefaultRuntime: 'runc',
    Swarm: swarm,
    LiveRestoreEnabled: true,
    Isolation: '',
    InitBinary: '',
    SecurityOptions: [],
    Warnings: null,
  };
}

/** A prune filter's `until`: a duration before now (10m, 24h), Unix seconds, or a date. */
function pruneUntil(v: string): number {
  const d = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v);
  if (d) return Date.now() - Number(d[1]) * { ms: 1, s: 1e3, m: 6e4, h: 36e5 }[d[2] as 'ms' | 's' | 'm' | 'h'];
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new BadRequest(`invalid filter 'until=${v}': a duration (24h), Unix seconds or a date`);
  return t;
}
