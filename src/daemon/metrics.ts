// Prometheus metrics of one node (`vxswarm daemon --metrics-addr`, off by default as dockerd's).
// Everything is read from the daemon's own counters when scraped, so nothing on a hot path pays for
// it; only Engine API requests and etcd commits are observed as they happen (histograms).
import http from 'node:http';
import client from 'prom-client';
import type { Router } from '../api/http.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { rtnlStats } from '../kernel/rtnl.js';
import type { Daemon } from './daemon.js';

type Labels = Record<string, string>;

export class DaemonMetrics {
  readonly registry = new client.Registry();

  constructor(private readonly d: Daemon) {
    const r = [this.registry];
    client.collectDefaultMetrics({ register: this.registry, prefix: 'vxswarm_process_' });
    // A value kept elsewhere, shown as it is at the scrape.
    const gauge = (name: string, help: string, labelNames: string[], read: () => Array<[Labels, number]>): void => {
      new client.Gauge({
        name,
        help,
        labelNames,
        registers: r,
        collect() {
          this.reset();
          for (const [l, v] of read()) this.set(l, v);
        },
      });
    };
    const counter = (name: string, help: string, labelNames: string[], read: () => Array<[Labels, number]>): void => {
      new client.Counter({
        name,
        help,
        labelNames,
        registers: r,
        collect() {
          this.reset();
          for (const [l, v] of read()) this.inc(l, v);
        },
      });
    };
    const g = (): NonNullable<Daemon['gossip']> | undefined => d.gossip;

    gauge('vxswarm_gossip_members', 'Gossip members this node knows, by state.', ['state'], () => {
      const by = new Map<string, number>();
      for (const m of g()?.ml.all() ?? []) by.set(m.state, (by.get(m.state) ?? 0) + 1);
      return [...by].map(([state, n]) => [{ state }, n]);
    });
    counter('vxswarm_gossip_probes_total', 'SWIM probes sent, and those that failed.', ['result'], () => {
      const s = g()?.ml.stats;
      return s
        ? [
            [{ result: 'sent' }, s.probes],
            [{ result: 'failed' }, s.probeFailures],
          ]
        : [];
    });
    counter('vxswarm_gossip_suspicions_total', 'Members this node suspected.', [], () => (g() ? [[{}, g()!.ml.stats.suspicionsRaised]] : []));
    counter('vxswarm_gossip_refutations_total', 'Suspicions of this node it refuted.', [], () => (g() ? [[{}, g()!.ml.stats.refutations]] : []));
    counter('vxswarm_gossip_deaths_total', 'Members declared dead.', [], () => (g() ? [[{}, g()!.ml.stats.deaths]] : []));
    // The transport's counters, in and out: packetsIn/packetsOut, bytesIn/bytesOut.
    const byDirection = (what: 'packets' | 'bytes') => (): Array<[Labels, number]> => {
      const t = g()?.stats().transport as Record<string, number> | undefined;
      return t
        ? [
            [{ direction: 'in' }, t[`${what}In`] ?? 0],
            [{ direction: 'out' }, t[`${what}Out`] ?? 0],
          ]
        : [];
    };
    counter('vxswarm_gossip_packets_total', 'Gossip packets, by direction.', ['direction'], byDirection('packets'));
    counter('vxswarm_gossip_bytes_total', 'Gossip bytes, by direction.', ['direction'], byDirection('bytes'));
    counter('vxswarm_gossip_table_events_total', 'Network-scoped table events, by kind.', ['kind'], () => {
      const s = g()?.db.stats;
      return s
        ? [
            [{ kind: 'sent' }, s.eventsSent],
            [{ kind: 'received' }, s.eventsReceived],
            [{ kind: 'applied' }, s.eventsApplied],
            [{ kind: 'rejected' }, s.rejectedNotMember],
          ]
        : [];
    });

    counter('vxswarm_overlay_repairs_total', 'Drift found in the kernel and put right, by kind.', ['kind'], () => {
      const sum = new Map<string, number>();
      for (const n of d.overlayNetworks()) for (const [k, v] of Object.entries(n.repairs)) sum.set(k, (sum.get(k) ?? 0) + v);
      sum.set('vip_table', d.lb.repairs);
      sum.set('mesh', d.meshStats().Repairs ?? 0);
      return [...sum].map(([kind, v]) => [{ kind }, v]);
    });
    counter('vxswarm_overlay_reconciles_total', 'Reconcile passes over the overlay networks of this node.', [], () => [
      [{}, d.overlayNetworks().reduce((s, n) => s + n.reconciles, 0)],
    ]);
    counter('vxswarm_overlay_reconcile_seconds_total', 'Time spent in those passes.', [], () => [
      [{}, d.overlayNetworks().reduce((s, n) => s + n.reconcileMsTotal, 0) / 1000],
    ]);
    gauge('vxswarm_overlay_peers', 'Remote endpoints programmed in the VTEPs, per network.', ['network'], () =>
      d.overlayNetworks().map((n) => [{ network: n.id }, n.listPeers().length]),
    );
    counter('vxswarm_kernel_netlink_requests_total', 'Netlink (rtnetlink) requests, and those the kernel refused.', ['result'], () => [
      [{ result: 'sent' }, rtnlStats.requests],
      [{ result: 'error' }, rtnlStats.errors],
    ]);

    gauge('vxswarm_manager_leader', '1 on the manager that leads the swarm.', [], () => {
      const c = d.controlStatus();
      return c ? [[{}, c.leading ? 1 : 0]] : [];
    });
    gauge('vxswarm_manager_members', 'Managers (etcd members) this manager sees, by whether they vote.', ['voting'], () => {
      const c = d.controlStatus();
      if (!c) return [];
      const voters = c.members.filter((m) => !m.isLearner).length;
      return [
        [{ voting: 'true' }, voters],
        [{ voting: 'false' }, c.members.length - voters],
      ];
    });
    gauge('vxswarm_manager_tasks', 'Tasks of the swarm by state, as this manager stores them.', ['state'], () => {
      const tasks = d.control?.store.listTasks() ?? [];
      const by = new Map<string, number>();
      for (const t of tasks) by.set(t.state, (by.get(t.state) ?? 0) + 1);
      return [...by].map(([state, n]) => [{ state }, n]);
    });
    gauge('vxswarm_node_containers', 'Containers on this node, by state.', ['state'], () => {
      const by = new Map<string, number>();
      for (const c of d.runtime.list()) by.set(c.status, (by.get(c.status) ?? 0) + 1);
      return [...by].map(([state, n]) => [{ state }, n]);
    });
    const commits = new client.Histogram({
      name: 'vxswarm_manager_commit_seconds',
      help: 'Time etcd took to commit a store transaction of this manager.',
      buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: r,
    });
    d.onStoreCommit = (s) => commits.observe(s);
    // The resolver runs on its own thread: its counters are asked for at the scrape.
    const dns = new client.Counter({ name: 'vxswarm_dns_queries_total', help: 'Embedded DNS queries, by answer.', labelNames: ['answer'], registers: r });
    (dns as unknown as { collect: () => Promise<void> }).collect = async () => {
      const s = await d.dnsStats().catch(() => undefined);
      dns.reset();
      for (const [answer, v] of Object.entries(s ?? {})) if (answer !== 'queries') dns.inc({ answer }, v);
    };
    this.requests = new client.Histogram({
      name: 'vxswarm_engine_api_request_duration_seconds',
      help: 'Engine API requests, by route and status code.',
      labelNames: ['route', 'code'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: r,
    });
  }

  private readonly requests: client.Histogram;

  /** Observes the router's requests and the store's commits (the store changes with the role). */
  attach(router: Router): void {
    router.observe = (route, code, s) => this.requests.observe({ route, code: String(code) }, s);
  }

  /** Serves /metrics on host:port, and what `also` serves (the topology page). */
  async listen(addr: string, log: Logger, also?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean): Promise<http.Server> {
    const m = /^(.*):(\d+)$/.exec(addr);
    if (!m) throw new Error(`invalid --metrics-addr "${addr}": HOST:PORT`);
    const server = http.createServer((req, res) => {
      if (also?.(req, res)) return;
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: GET /metrics, /ui\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'Content-Type': this.registry.contentType }).end(text),
        (e: unknown) => {
          log.warn('metrics scrape failed', { error: errorMessage(e) });
          res.writeHead(500).end();
        },
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(Number(m[2]), m[1]!.replace(/^\[|\]$/g, ''), () => resolve());
    });
    return server;
  }
}
