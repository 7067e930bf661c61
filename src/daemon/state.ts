// What a node keeps on disk about its swarm membership, so a restart picks up where it was.
import fs from 'node:fs';
import path from 'node:path';
import type { Role } from '../cluster/manager/ca.js';

export interface SwarmState {
  nodeId: string;
  clusterId: string;
  role: Role;
  /** the manager this node talks to, host:port */
  managerAddr: string;
  /** every manager's address as the leader last listed them (the session reaches whichever leads) */
  managers?: string[];
  advertiseAddr: string;
  listenAddr: string;
  dataPathPort: number;
}

export interface LocalEndpoint {
  id: string;
  name: string;
  networkId: string;
  networkName: string;
  ip: string;
  mac: string;
  netns: string;
  /** its interface in the namespace (eth0 when absent): a task's Nth network is ethN */
  ifname?: string;
  /** the node's routing mesh sandbox (Docker's ingress-sbox) */
  sbox?: boolean;
  /** set for a task's endpoint: the manager allocated it and releases it */
  taskId?: string;
  /** for DNS: the task's service and its network aliases */
  service?: string;
  aliases?: string[];
}

export interface CertFiles {
  caPem: string;
  certPem: string;
  keyPem: string;
}

function writeAtomic(file: string, data: string, mode = 0o600): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, data, { mode });
  fs.renameSync(tmp, file);
}

/** The same, off the event loop (files that grow with the node's endpoints). */
async function writeAtomicAsync(file: string, data: string, mode = 0o600): Promise<void> {
  await fs.promises.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp`;
  await fs.promises.writeFile(tmp, data, { mode });
  await fs.promises.rename(tmp, file);
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export class NodeDisk {
  constructor(readonly root: string) {}

  get swarmDir(): string {
    return path.join(this.root, 'swarm');
  }
  /** a manager's etcd member: its data, TLS files, pid file and log */
  get etcdDir(): string {
    return path.join(this.root, 'etcd');
  }
  private get certDir(): string {
    return path.join(this.swarmDir, 'certificates');
  }

  loadState(): SwarmState | undefined {
    return readJson<SwarmState>(path.join(this.swarmDir, 'state.json'));
  }
  saveState(s: SwarmState): void {
    writeAtomic(path.join(this.swarmDir, 'state.json'), JSON.stringify(s, null, 2));
  }

  loadCerts(): CertFiles | undefined {
    try {
      return {
        caPem: fs.readFileSync(path.join(this.certDir, 'swarm-root-ca.crt'), 'utf8'),
        certPem: fs.readFileSync(path.join(this.certDir, 'swarm-node.crt'), 'utf8'),
        keyPem: fs.readFileSync(path.join(this.certDir, 'swarm-node.key'), 'utf8'),
      };
    } catch {
      return undefined;
    }
  }
  saveCerts(c: CertFiles): void {
    writeAtomic(path.join(this.certDir, 'swarm-root-ca.crt'), c.caPem, 0o644);
    writeAtomic(path.join(this.certDir, 'swarm-node.key'), c.keyPem, 0o600);
    writeAtomic(path.join(this.certDir, 'swarm-node.crt'), c.certPem, 0o644);
  }

  loadEndpoints(): LocalEndpoint[] {
    return readJson<LocalEndpoint[]>(path.join(this.root, 'endpoints.json')) ?? [];
  }
  saveEndpoints(eps: LocalEndpoint[]): Promise<void> {
    return writeAtomicAsync(path.join(this.root, 'endpoints.json'), JSON.stringify(eps));
  }

  loadNetworks<T>(): T[] {
    return readJson<T[]>(path.join(this.root, 'networks.json')) ?? [];
  }
  saveNetworks<T>(nets: T[]): Promise<void> {
    return writeAtomicAsync(path.join(this.root, 'networks.json'), JSON.stringify(nets));
  }

  /** A demoted manager's etcd member (removed from the cluster already). */
  wipeEtcd(): void {
    fs.rmSync(this.etcdDir, { recursive: true, force: true });
  }

  /** Forgets the swarm (leave). Endpoint records go with it. */
  wipeSwarm(): void {
    fs.rmSync(this.swarmDir, { recursive: true, force: true });
    this.wipeEtcd();
    fs.rmSync(path.join(this.root, 'endpoints.json'), { force: true });
    fs.rmSync(path.join(this.root, 'networks.json'), { force: true });
  }
}
