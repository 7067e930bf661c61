// Docker Engine API JSON shapes, built from our records. The only place that knows them.
import os from 'node:os';
import { tlsInfo } from '../cluster/manager/ca.js';
import type { ClusterRecord, NetworkRecord, NodeRecord } from '../cluster/manager/types.js';
import { contains, parseCidr, parseIp } from '../core/ipv4.js';
import { API_VERSION, MIN_API_VERSION, VERSION } from '../core/version.js';
import type { LocalNetworkInfo } from '../daemon/daemon.js';
import type { LocalEndpoint } from '../daemon/state.js';
import type { EngineEvent } from '../daemon/events.js';

const NODE_CERT_EXPIRY_NS = 90 * 24 * 3600 * 1e9;

function tls(caPem: string): Record<string, string> {
  const t = tlsInfo(caPem);
  return { TrustRoot: t.trustRoot, CertIssuerSubject: t.issuerSubject, CertIssuerPublicKey: t.issuerPublicKey };
}

/** Raft's view of the managers, as the leader has it. */
export interface ManagerView {
  leader: string;
  reachable: (nodeId: string) => boolean;
}

export function nodeJson(n: NodeRecord, view: ManagerView, caPem: string): Record<string, unknown> {
  const out: Record<string, unknown> = {
    ID: n.id,
    Version: { Index: n.version },
    CreatedAt: n.createdAt,
    UpdatedAt: n.updatedAt,
    Spec: { Labels: n.labels, Role: n.role, Availability: n.availability },
    Description: {
      Hostname: n.hostname,
      Platform: { Architecture: 'x86_64', OS: 'linux' },
      Resources: n.resources
        ? { NanoCPUs: n.resources.nanoCpus, MemoryBytes: n.resources.memoryBytes }
        : { NanoCPUs: os.cpus().length * 1e9, MemoryBytes: os.totalmem() },
      Engine: { EngineVersion: n.engineVersion, Plugins: [{ Type: 'Network', Name: 'overlay' }] },
      TLSInfo: tls(caPem),
    },
    Status: { State: n.state, Message: n.message, Addr: n.addr },
  };
  if (n.role === 'manager')
    out.ManagerStatus = {
      Leader: n.id === view.leader,
      Reachability: n.id === view.leader || view.reachable(n.id) ? 'reachable' : 'unreachable',
      Addr: n.managerAddr ?? `${n.addr}:2377`,
    };
  return out;
}

export function swarmSpec(c: Pick<ClusterRecord, 'certDays' | 'taskHistory' | 'heartbeatMs'>): Record<string, unknown> {
  return {
    Name: 'default',
    Labels: {},
    Orchestration: { TaskHistoryRetentionLimit: c.taskHistory ?? 5 },
    Raft: { SnapshotInterval: 10000, KeepOldSnapshots: 0, LogEntriesForSlowFollowers: 500, ElectionTick: 10, HeartbeatTick: 1 },
    Dispatcher: { HeartbeatPeriod: (c.heartbeatMs ?? 500) * 1e6 },
    CAConfig: { NodeCertExpiry: c.certDays * 24 * 3600 * 1e9 || NODE_CERT_EXPIRY_NS },
    TaskDefaults: {},
    EncryptionConfig: { AutoLockManagers: false },
  };
}

export function clusterJson(c: ClusterRecord): Record<string, unknown> {
  return {
    ID: c.id,
    Version: { Index: c.version },
    CreatedAt: c.createdAt,
    UpdatedAt: c.updatedAt,
    Spec: swarmSpec(c),
    TLSInfo: tls(c.caCertPem),
    RootRotationInProgress: false,
    DefaultAddrPool: c.defaultAddrPool,
    SubnetSize: c.subnetSize,
    DataPathPort: c.dataPathPort,
  };
}

export function swarmJson(c: ClusterRecord, tokens: { worker: string; manager: string }): Record<string, unknown> {
  return { ...clusterJson(c), JoinTokens: { Worker: tokens.worker, Manager: tokens.manager } };
}

export function networkJson(n: NetworkRecord, local: LocalEndpoint[], peers: Array<{ name: string; ip: string }>): Record<string, unknown> {
  const prefixOf = (ip: string): string => {
    const cfg = n.ipam.configs.find((c) => contains(parseCidr(c.subnet), parseIp(ip)));
    return cfg ? cfg.subnet.split('/')[1]! : '32';
  };
  return {
    Name: n.name,
    Id: n.id,
    Created: n.createdAt,
    Scope: 'swarm',
    Driver: n.driver,
    EnableIPv4: true,
    EnableIPv6: false,
    IPAM: {
      Driver: 'default',
      Options: null,
      Config: n.ipam.configs.map((c) => ({ Subnet: c.subnet, Gateway: c.gateway, ...(c.ipRange ? { IPRange: c.ipRange } : {}) })),
    },
    Internal: n.internal,
    Attachable: n.attachable,
    Ingress: n.ingress,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: Object.fromEntries(
      // Docker keys a container's endpoint by its container ID, and the mesh sandbox's as "ingress-sbox".
      local.map((e) => [
        e.sbox ? 'ingress-sbox' : e.id,
        { Name: e.name, EndpointID: e.id, MacAddress: e.mac, IPv4Address: `${e.ip}/${prefixOf(e.ip)}`, IPv6Address: '' },
      ]),
    ),
    Options: n.options,
    Labels: n.labels,
    ...(peers.length ? { Peers: peers.map((p) => ({ Name: p.name, IP: p.ip })) } : {}),
  };
}

/** Docker's JSON for one of its local networks (bridge, docker_gwbridge, host, none). */
export function localNetworkJson(n: LocalNetworkInfo): Record<string, unknown> {
  return {
    Name: n.name,
    Id: n.id,
    Created: n.createdAt,
    Scope: 'local',
    Driver: n.driver,
    EnableIPv4: true,
    EnableIPv6: false,
    IPAM: { Driver: 'default', Options: null, Config: n.subnet ? [{ Subnet: n.subnet, Gateway: n.gateway }] : [] },
    Internal: false,
    Attachable: false,
    Ingress: false,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: {},
    Options: n.options,
    Labels: {},
  };
}

export function versionJson(): Record<string, unknown> {
  const details = {
    ApiVersion: API_VERSION,
    MinAPIVersion: MIN_API_VERSION,
    Os: 'linux',
    Arch: 'amd64',
    GitCommit: 'vxswarm',
    GoVersion: `node${process.versions.node}`,
    KernelVersion: os.release(),
    BuildTime: '',
    Experimental: 'false',
  };
  return {
    Platform: { Name: 'vxswarm' },
    Components: [{ Name: 'Engine', Version: VERSION, Details: details }],
    Version: VERSION,
    ApiVersion: API_VERSION,
    MinAPIVersion: MIN_API_VERSION,
    GitCommit: 'vxswarm',
    GoVersion: `node${process.versions.node}`,
    Os: 'linux',
    Arch: 'amd64',
    KernelVersion: os.release(),
    BuildTime: '',
  };
}

/** Docker's EventMessage. */
export function eventJson(e: EngineEvent): Record<string, unknown> {
  return {
    Type: e.type,
    Action: e.action,
    Actor: { ID: e.id, Attributes: e.attributes },
    scope: e.scope,
    time: Math.floor(e.timeNano / 1e9),
    timeNano: e.timeNano,
    // The fields of API < 1.22, which the CLI still prints for containers.
    ...(e.type === 'container' ? { status: e.action, id: e.id, from: e.attributes.image ?? '' } : {}),
  };
}
