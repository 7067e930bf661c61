// `vxswarm daemon`: start the node, serve the Engine API on its unix socket, stop cleanly
// on SIGTERM/SIGINT.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildRouter } from '../api/routes.js';
import { createHttpServer, listenUnix } from '../api/http.js';
import { InvalidArgumentError, errorMessage } from '../core/errors.js';
import { createLogger, setLogLevel, type LogLevel } from '../core/log.js';
import { Daemon } from './daemon.js';
import type http from 'node:http';

export interface DaemonFlags {
  root: string;
  execRoot: string;
  host: string;
  logLevel: string;
  netnsPrefix: string;
  /** HOST:PORT for Prometheus metrics; off when absent */
  metricsAddr?: string;
}

/** the daemon's nice value */
const DAEMON_NICE = -5;

export function socketPathOf(host: string): string {
  if (!host.startsWith('unix://')) throw new InvalidArgumentError(`unsupported host "${host}": only unix:///path sockets are served`);
  return host.slice('unix://'.length);
}

export async function runDaemon(f: DaemonFlags): Promise<void> {
  setLogLevel(f.logLevel as LogLevel);
  const log = createLogger({ pid: process.pid });
  const socket = socketPathOf(f.host);
  fs.mkdirSync(f.root, { recursive: true, mode: 0o700 });
  fs.mkdirSync(f.execRoot, { recursive: true, mode: 0o755 });
  const pidFile = path.join(f.execRoot, 'vxswarm.pid');
  fs.writeFileSync(pidFile, `${process.pid}\n`);
  // Heartbeats, gossip probes and elections must not wait behind the containers' own work (twenty
  // runc starts on two cores kept the loop waiting for a CPU for tens of ms): the daemon runs a
  // little above normal priority, as dockerd protects itself with its OOM score. Containers are
  // started at the normal one (vxshim spawner resets it).
  try {
    os.setPriority(DAEMON_NICE);
  } catch (e) {
    log.warn('could not raise the daemon priority', { error: errorMessage(e) });
  }
  const reconcileMs = process.env.VXSWARM_RECONCILE_MS ? Number(process.env.VXSWARM_RECONCILE_MS) : undefined;
  const daemon = new Daemon({
    root: f.root,
    execRoot: f.execRoot,
    netnsPrefix: f.netnsPrefix,
    log,
    ...(reconcileMs ? { reconcileMs } : {}),
  });
  await daemon.start();
  const router = buildRouter(daemon);
  const server = createHttpServer(router, log);
  let metricsServer: http.Server | undefined;
  let page: { close(): void } | undefined;
  if (f.metricsAddr) {
    // Loaded only when asked for: a daemon without metrics does not carry prom-client.
    const { DaemonMetrics } = await import('./metrics.js');
    const metrics = new DaemonMetrics(daemon);
    metrics.attach(router);
    const { TopologyPage } = await import('./ui.js');
    const ui = new TopologyPage(() => daemon.clusterTopology(), log.child({ component: 'ui' }));
    page = ui;
    metricsServer = await metrics.listen(f.metricsAddr, log, (req, res) => ui.handle(req, res));
    log.info('metrics and the topology page served', { addr: f.metricsAddr, paths: ['/metrics', '/ui'] });
  }
  await listenUnix(server, socket);
  log.info('daemon ready', { socket, root: f.root });
  process.stdout.write(`vxswarm daemon ready on ${f.host}\n`);

  let stopping = false;
  const stop = async (sig: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal: sig });
    server.close();
    server.closeAllConnections();
    page?.close();
    metricsServer?.close();
    try {
      await daemon.stop();
    } catch (e) {
      log.error('stop failed', { error: errorMessage(e) });
    }
    fs.rmSync(socket, { force: true });
    fs.rmSync(pidFile, { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
