// One manager's etcd (Debian's etcd-server 3.4), run and supervised by the daemon: peer traffic on
// the manager's advertise address, clients on loopback only, both over TLS from the swarm CA.
// Peers must hold a manager certificate (its "swarm-manager" name); a removed member is refused by
// the others whatever certificate it holds. The daemon talks to it through etcd's JSON gateway
// (/v3/...), so no gRPC stack is loaded into the daemon.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { VxError, errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { gatewayCall } from './kv.js';

export const ETCD_BIN = process.env.VXSWARM_ETCD ?? '/usr/bin/etcd';
/** Docker uses 2377 for all manager traffic; etcd's raft wants its own listener, so 2380 (etcd's own). */
export const ETCD_PEER_PORT = 2380;
export const ETCD_CLIENT_PORT = 2379;
/** A LAN: beats every 100 ms, an election after 1 s without one (etcd's defaults are 100/1000). */
export const ETCD_HEARTBEAT_MS = 100;
export const ETCD_ELECTION_MS = 1000;

export interface EtcdTls {
  caPem: string;
  certPem: string;
  keyPem: string;
  /** revoked certificates (demoted managers'); kept from the last run when not given */
  crlPem?: string;
}

export interface EtcdMemberConfig {
  /** the member's name: the node ID */
  name: string;
  /** <root>/etcd */
  dir: string;
  advertiseIp: string;
  peerPort?: number;
  clientPort?: number;
  tls: EtcdTls;
  /** name → peer URL of every member the cluster starts with (this one included) */
  initialCluster: Record<string, string>;
  state: 'new' | 'existing';
  /** keeps two swarms' etcds from ever joining each other: the cluster ID */
  clusterToken: string;
  forceNewCluster?: boolean;
  /** runs etcd through this prefix (tests: `nsenter --net=...` into a lab host) */
  commandPrefix?: string[];
  /** sends gateway calls some other way (tests: from inside the lab host, whose loopback is its own) */
  transport?: (method: string, url: string, body: unknown, tlsDir: string) => Promise<unknown>;
  log: Logger;
}

export interface EtcdMemberInfo {
  ID: string;
  name?: string;
  peerURLs?: string[];
  clientURLs?: string[];
  isLearner?: boolean;
}

export function peerUrl(ip: string, port = ETCD_PEER_PORT): string {
  return `https://${ip}:${port}`;
}

export class EtcdMember {
  private child: ChildProcess | undefined;
  private stopping = false;

  constructor(readonly cfg: EtcdMemberConfig) {}

  get tlsDir(): string {
    return path.join(this.cfg.dir, 'tls');
  }
  get dataDir(): string {
    return path.join(this.cfg.dir, 'data');
  }
  private get pidFile(): string {
    return path.join(this.cfg.dir, 'etcd.pid');
  }
  get clientUrl(): string {
    return `https://127.0.0.1:${this.cfg.clientPort ?? ETCD_CLIENT_PORT}`;
  }
  get peerUrl(): string {
    return peerUrl(this.cfg.advertiseIp, this.cfg.peerPort);
  }

  args(): string[] {
    const t = this.tlsDir;
    const cluster = Object.entries(this.cfg.initialCluster)
      .map(([n, u]) => `${n}=${u}`)
      .join(',');
    return [
      `--name=${this.cfg.name}`,
      `--data-dir=${this.dataDir}`,
      `--listen-peer-urls=${this.peerUrl}`,
      `--initial-advertise-peer-urls=${this.peerUrl}`,
      `--listen-client-urls=${this.clientUrl}`,
      `--advertise-client-urls=${this.clientUrl}`,
      `--initial-cluster=${cluster}`,
      `--initial-cluster-state=${this.cfg.state}`,
      `--initial-cluster-token=${this.cfg.clusterToken}`,
      `--heartbeat-interval=${ETCD_HEARTBEAT_MS}`,
      `--election-timeout=${ETCD_ELECTION_MS}`,
      // A member back from a partition must not depose a healthy leader with its higher term
      // (the default from etcd 3.5 on; 3.4 has it off).
      '--pre-vote=true',
      `--cert-file=${t}/cert.pem`,
      `--key-file=${t}/key.pem`,
      `--trusted-ca-file=${t}/ca.pem`,
      '--client-cert-auth',
      `--peer-cert-file=${t}/cert.pem`,
      `--peer-key-file=${t}/key.pem`,
      `--peer-trusted-ca-file=${t}/ca.pem`,
      '--peer-client-cert-auth',
      // a worker's certificate is from the same CA: only managers may speak raft
      '--peer-cert-allowed-hostname=swarm-manager',
      // a demoted manager's certificate is still valid and still says swarm-manager: etcd reads
      // this list of revoked serials on every connection it accepts
      `--peer-crl-file=${t}/crl.pem`,
      `--client-crl-file=${t}/crl.pem`,
      // memory: etcd keeps this many entries in memory before a snapshot (100,000 by default)
      '--snapshot-count=10000',
      '--enable-v2=false',
      // one store transaction may write a whole service's tasks and their addresses
      '--max-txn-ops=10000',
      '--max-request-bytes=8388608',
      // old revisions are history nobody reads after the watch has passed them
      '--auto-compaction-mode=revision',
      '--auto-compaction-retention=10000',
      '--logger=zap',
      '--log-level=warn',
      ...(this.cfg.forceNewCluster ? ['--force-new-cluster'] : []),
    ];
  }

  /**
   * Starts etcd (replacing one a killed daemon left running) and waits until it answers: with a
   * leader (`healthy`, a new cluster), or merely listening (a restart may find no quorum yet).
   */
  async start(waitFor: 'healthy' | 'listening' = 'healthy', timeoutMs = 20_000): Promise<void> {
    await fs.promises.mkdir(this.tlsDir, { recursive: true, mode: 0o700 });
    const files = { 'ca.pem': this.cfg.tls.caPem, 'cert.pem': this.cfg.tls.certPem, 'key.pem': this.cfg.tls.keyPem };
    for (const [f, pem] of Object.entries(files)) await fs.promises.writeFile(path.join(this.tlsDir, f), pem, { mode: 0o600 });
    if (this.cfg.tls.crlPem) await this.writeCrl(this.cfg.tls.crlPem);
    if (!fs.existsSync(this.crlFile)) throw new VxError(`no certificate revocation list at ${this.crlFile}`, 500);
    await this.replaceStale();
    const log = await fs.promises.open(path.join(this.cfg.dir, 'etcd.log'), 'a');
    const cmd = [...(this.cfg.commandPrefix ?? []), ETCD_BIN, ...this.args()];
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', log.fd, log.fd], env: { ...process.env, GOMAXPROCS: '2' } });
    await log.close();
    this.child = child;
    this.stopping = false;
    await fs.promises.writeFile(this.pidFile, String(child.pid));
    child.on('exit', (code, sig) => {
      if (this.child === child) this.child = undefined;
      if (!this.stopping) this.cfg.log.error('etcd exited', { code, signal: sig, log: path.join(this.cfg.dir, 'etcd.log') });
    });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.child) throw new VxError(`etcd did not start; see ${path.join(this.cfg.dir, 'etcd.log')}`, 500);
      if (waitFor === 'healthy' ? await this.healthy() : await this.listening()) return;
      if (Date.now() > deadline) throw new VxError(`etcd did not become ${waitFor} within ${timeoutMs} ms`, 503);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  get crlFile(): string {
    return path.join(this.tlsDir, 'crl.pem');
  }

  /** Replaces the revocation list (atomically: etcd may be reading it for a connection). */
  async writeCrl(pem: string): Promise<void> {
    await fs.promises.mkdir(this.tlsDir, { recursive: true, mode: 0o700 });
    const tmp = `${this.crlFile}.tmp`;
    await fs.promises.writeFile(tmp, pem, { mode: 0o600 });
    await fs.promises.rename(tmp, this.crlFile);
  }

  /** A previous daemon's etcd (kill -9 leaves it running) holds our ports and data: end it first. */
  private async replaceStale(): Promise<void> {
    if (await stopStaleEtcd(this.cfg.dir)) this.cfg.log.warn('stopped an etcd a previous run left');
  }

  async stop(): Promise<void> {
    const c = this.child;
    this.stopping = true;
    if (!c) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
    await fs.promises.rm(this.pidFile, { force: true });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** True when this member answers, leader or not. */
  async listening(): Promise<boolean> {
    try {
      return typeof ((await this.call('GET', '/version', undefined, 1000)) as { etcdserver?: string }).etcdserver === 'string';
    } catch {
      return false;
    }
  }

  /**
   * Waits until this member votes: a learner asks to be promoted (its own etcd forwards the call
   * to the leader, which refuses until the learner has caught up).
   */
  async waitVoter(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      try {
        const me = (await this.members()).find((m) => m.peerURLs?.includes(this.peerUrl));
        if (me && !me.isLearner) return;
        if (me) await this.promote(me.ID);
      } catch (e) {
        last = errorMessage(e);
      }
      if (Date.now() > deadline) throw new VxError(`this manager's etcd member was not promoted within ${timeoutMs} ms: ${last}`, 503);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** True when this member answers and its cluster has a leader. */
  async healthy(): Promise<boolean> {
    try {
      const r = (await this.call('GET', '/health', undefined, 1000)) as { health?: string };
      return r.health === 'true';
    } catch {
      return false;
    }
  }

  // ---- membership ----

  async members(): Promise<EtcdMemberInfo[]> {
    return ((await this.call('POST', '/v3/cluster/member/list', {})) as { members?: EtcdMemberInfo[] }).members ?? [];
  }
  /** Adds a member that learns the log without voting until promoted. */
  async addLearner(url: string, timeoutMs = 30_000): Promise<EtcdMemberInfo> {
    // etcd adds a member only once every voter has been connected for its health interval (5 s),
    // and holds one learner at a time: until then it says "unhealthy cluster" or "too many
    // learner members" (two workers promoted at once join one after the other).
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return ((await this.call('POST', '/v3/cluster/member/add', { peerURLs: [url], isLearner: true })) as { member: EtcdMemberInfo }).member;
      } catch (e) {
        if (!/unhealthy cluster|too many learner/.test(errorMessage(e)) || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }
  /** Makes a caught-up learner a voter (etcd refuses while it lags behind). */
  async promote(id: string): Promise<void> {
    await this.call('POST', '/v3/cluster/member/promote', { ID: id });
  }
  async remove(id: string): Promise<void> {
    await this.call('POST', '/v3/cluster/member/remove', { ID: id });
  }

  // ---- keys (the gateway speaks base64) ----

  async put(key: string, value: string): Promise<{ revision: number }> {
    const r = (await this.call('POST', '/v3/kv/put', { key: b64(key), value: b64(value) })) as { header: { revision: string } };
    return { revision: Number(r.header.revision) };
  }
  async get(key: string): Promise<{ value: string; modRevision: number } | undefined> {
    const r = (await this.call('POST', '/v3/kv/range', { key: b64(key) })) as { kvs?: { value?: string; mod_revision: string }[] };
    const kv = r.kvs?.[0];
    return kv ? { value: Buffer.from(kv.value ?? '', 'base64').toString('utf8'), modRevision: Number(kv.mod_revision) } : undefined;
  }

  /** One call to this member's JSON gateway over its client TLS. */
  call(method: string, p: string, body?: unknown, timeoutMs = 5000): Promise<unknown> {
    const url = new URL(p, this.clientUrl);
    if (this.cfg.transport) return this.cfg.transport(method, url.href, body, this.tlsDir);
    return gatewayCall(url, method, body, timeoutMs, { ca: this.cfg.tls.caPem, cert: this.cfg.tls.certPem, key: this.cfg.tls.keyPem });
  }
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/**
 * Ends the etcd a killed daemon left running on `dir` (<root>/etcd), found by its pid file and
 * checked to be an etcd of that data directory. True if there was one.
 */
export async function stopStaleEtcd(dir: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<boolean> {
  const dataDir = path.join(dir, 'data');
  let pid: number;
  try {
    pid = Number(await fs.promises.readFile(path.join(dir, 'etcd.pid'), 'utf8'));
  } catch {
    return false;
  }
  if (!pid || !(await isOurEtcd(pid, dataDir))) return false;
  process.kill(pid, signal);
  for (let i = 0; i < 100 && (await isOurEtcd(pid, dataDir)); i++) await new Promise((r) => setTimeout(r, 50));
  if (await isOurEtcd(pid, dataDir)) process.kill(pid, 'SIGKILL');
  return true;
}

/** The process is an etcd of this data directory (never someone else's process). */
async function isOurEtcd(pid: number, dataDir: string): Promise<boolean> {
  try {
    const cmd = await fs.promises.readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmd.includes('etcd') && cmd.includes(`--data-dir=${dataDir}`);
  } catch {
    return false;
  }
}
