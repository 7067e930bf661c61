// The manager's records. Docker's JSON shapes are built from these in api/ only.
import type { Role } from './ca.js';

export type Availability = 'active' | 'pause' | 'drain';
export type NodeState = 'unknown' | 'ready' | 'down' | 'disconnected';

export interface Meta {
  version: number;
  createdAt: string;
  updatedAt: string;
}

export interface NodeRecord extends Meta {
  id: string;
  hostname: string;
  role: Role;
  availability: Availability;
  /** underlay / advertise address, without port */
  addr: string;
  state: NodeState;
  message: string;
  engineVersion: string;
  labels: Record<string, string>;
  /** cert expiry, for inspect */
  certNotAfter?: string;
}

export interface IpamConfig {
  subnet: string;
  gateway: string;
  ipRange?: string;
}

export interface NetworkRecord extends Meta {
  id: string;
  name: string;
  driver: 'overlay';
  attachable: boolean;
  ingress: boolean;
  internal: boolean;
  labels: Record<string, string>;
  /** driver options, including com.docker.network.driver.overlay.vxlanid_list */
  options: Record<string, string>;
  ipam: { driver: 'default'; options: Record<string, string>; configs: IpamConfig[] };
  vnis: number[];
}

export interface AttachmentRecord {
  id: string;
  networkId: string;
  nodeId: string;
  /** what the endpoint is for: a test endpoint's name, later a task ID */
  name: string;
  ip: string;
  mac: string;
  createdAt: string;
}

export interface ClusterRecord {
  id: string;
  createdAt: string;
  updatedAt: string;
  version: number;
  defaultAddrPool: string[];
  subnetSize: number;
  dataPathPort: number;
  workerSecret: string;
  managerSecret: string;
  caCertPem: string;
  caKeyPem: string;
  certDays: number;
  /** gossip encryption keys (base64); the first is the one nodes send with */
  gossipKeys?: string[];
}
