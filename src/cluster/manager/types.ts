// The manager's records. Docker's JSON shapes are built from these in api/ only.
import type { HealthcheckSpec } from '../../runtime/health.js';
import type { MountSpec } from '../../runtime/volumes.js';
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
  /** a manager's API address (host:port) */
  managerAddr?: string;
  /** serials (hex) of the manager certificates issued to this node, revoked when it is demoted or removed */
  managerCerts?: string[];
  /** what the node has for tasks to reserve (Description.Resources); absent: not told, nothing reserved against it */
  resources?: NodeResources;
  /** its address on the encrypted overlays' WireGuard tunnel (TUNNEL_POOL), given when it joins */
  tunnelIp?: string;
  /** its WireGuard public key, as the node last sent it (the private key never leaves the node) */
  wgPublicKey?: string;
}

export interface NodeResources {
  nanoCpus: number;
  memoryBytes: number;
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
  /** removed while tasks of removed services still held addresses on it: gone once they are (swarmkit's PendingDelete) */
  pendingDelete?: boolean;
}

/** The name of a node's own attachment on the ingress network: its routing mesh sandbox. */
export const INGRESS_SBOX = 'ingress-sbox';

export interface AttachmentRecord {
  id: string;
  networkId: string;
  nodeId: string;
  /** what the endpoint is for: a task's ID, or a node-local endpoint's name */
  name: string;
  /** asked for by its node for an endpoint of its own (not a task's): bounded per node, and
   *  released when the node no longer reports it */
  local?: boolean;
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
  /** finished tasks kept per slot (Docker's TaskHistoryRetentionLimit); absent: 5 */
  taskHistory?: number;
  /** how often managers and nodes beat on a session (Docker's Dispatcher.HeartbeatPeriod); absent: 500 ms */
  heartbeatMs?: number;
  /** gossip encryption keys (base64); the first is the one nodes send with */
  gossipKeys?: string[];
  /** serials (hex) of manager certificates of nodes since demoted or removed: etcd's peers refuse them */
  revokedCerts?: string[];
}

export type TaskState =
  'new' | 'pending' | 'assigned' | 'accepted' | 'preparing' | 'starting' | 'running' | 'complete' | 'shutdown' | 'failed' | 'rejected' | 'remove' | 'orphaned';

export const TASK_STATE_ORDER: TaskState[] = [
  'new',
  'pending',
  'assigned',
  'accepted',
  'preparing',
  'starting',
  'running',
  'complete',
  'shutdown',
  'failed',
  'rejected',
  'remove',
  'orphaned',
];

/** A task at or past this point will not run again. */
export function isTerminal(s: TaskState): boolean {
  return TASK_STATE_ORDER.indexOf(s) > TASK_STATE_ORDER.indexOf('running');
}

export type RestartCondition = 'none' | 'on-failure' | 'any';

/** What a service runs: our own record, converted from and to Docker's ServiceSpec in api/. */
export interface ServiceSpec {
  name: string;
  labels: Record<string, string>;
  image: string;
  command: string[];
  args: string[];
  env: string[];
  workingDir: string;
  user: string;
  hostname: string;
  networks: { target: string; aliases: string[] }[];
  /**
   * replicated: `replicas` tasks placed by the scheduler; global: one task on every eligible node;
   * replicated-job: `replicas` completions, at most `maxConcurrent` at once; global-job: one
   * completion on every eligible node. A job's finished task is never started again.
   */
  mode?: ServiceMode;
  /** replicated: tasks; replicated-job: completions wanted (TotalCompletions) */
  replicas: number;
  /** replicated-job: tasks running at once (MaxConcurrent) */
  maxConcurrent?: number;
  constraints: string[];
  restart: { condition: RestartCondition; delayMs: number; maxAttempts: number };
  memoryLimit: number;
  /** CPU limit in billionths of a CPU (Docker's NanoCPUs); 0 or absent: none */
  nanoCpus?: number;
  /** what each task reserves on its node (Resources.Reservations): the scheduler places it only where that is free */
  reservations?: Partial<NodeResources>;
  /** spread preferences, outermost first: node attributes (node.labels.zone) whose values share the tasks evenly */
  spread?: string[];
  /** at most this many tasks of the service on one node (Placement.MaxReplicas); 0 or absent: no limit */
  maxReplicasPerNode?: number;
  stopGraceMs: number;
  /** the container's health check (Docker's Healthcheck; test ['NONE'] turns the image's off) */
  healthcheck?: HealthcheckSpec;
  /** volumes, bind mounts and tmpfs mounts of each task's container */
  mounts?: MountSpec[];
  /** configs made files in each task's container (ContainerSpec.Configs) */
  configs?: ConfigRef[];
  /** how a spec change rolls out (Docker's UpdateConfig); absent: Docker's defaults */
  update?: UpdatePolicy;
  containerLabels: Record<string, string>;
  /** bumped by `service update --force`: a different value redeploys every task */
  forceUpdate?: number;
  /** vip (absent: Docker's default): one virtual IP per network, load-balanced; dnsrr: the name resolves to the tasks */
  endpointMode?: 'vip' | 'dnsrr';
  /** published ports as asked for (EndpointSpec.Ports); a published port of 0 is assigned one */
  ports?: PortConfig[];
}

export type ServiceMode = 'replicated' | 'global' | 'replicated-job' | 'global-job';

export const isJob = (spec: ServiceSpec): boolean => spec.mode === 'replicated-job' || spec.mode === 'global-job';
export const isGlobal = (spec: ServiceSpec): boolean => spec.mode === 'global' || spec.mode === 'global-job';

/** A published port: ingress (every node, through the routing mesh) or host (the task's node only). */
export interface PortConfig {
  name?: string;
  protocol: 'tcp' | 'udp';
  targetPort: number;
  /** 0 in a spec: the manager assigns one from 30000-32767 (ingress mode) */
  publishedPort: number;
  publishMode: 'ingress' | 'host';
}

export interface UpdatePolicy {
  /** slots replaced at once; 0 = all */
  parallelism: number;
  /** pause between one batch finishing and the next starting */
  delayMs: number;
  /** stop-first: old task stops, then the new one starts; start-first: the other way round */
  order: 'stop-first' | 'start-first';
  /** a new task failing during the update pauses it, rolls the service back, or the update goes on */
  failureAction: 'pause' | 'continue' | 'rollback';
}

export const DEFAULT_UPDATE_POLICY: UpdatePolicy = { parallelism: 1, delayMs: 0, order: 'stop-first', failureAction: 'pause' };

/** Docker's UpdateStatus: where a rolling update stands. */
export interface UpdateStatus {
  state: 'updating' | 'paused' | 'completed' | 'rollback_started' | 'rollback_paused' | 'rollback_completed';
  startedAt: string;
  completedAt?: string;
  message: string;
  /** a batch is being replaced; when it finished (for the delay before the next) */
  inBatch?: boolean;
  batchDoneAt?: number;
}

/** A swarm config (docker config create): data any task can be given as a read-only file. */
export interface ConfigRecord extends Meta {
  id: string;
  name: string;
  labels: Record<string, string>;
  /** base64, as the API carries it */
  data: string;
}

/** A service's use of a config: which one, and the file it becomes in the container. */
export interface ConfigRef {
  configId: string;
  configName: string;
  /** absolute path in the container */
  target: string;
  uid: string;
  gid: string;
  /** file mode (Docker's default 0444) */
  mode: number;
}

export interface ServiceRecord extends Meta {
  id: string;
  spec: ServiceSpec;
  previousSpec?: ServiceSpec;
  updateStatus?: UpdateStatus;
  /** bumps on every spec change; tasks of an older one are replaced */
  specVersion: number;
  /** its virtual IPs, one per network it is on (vip mode); kept until the service goes or leaves */
  vips?: ServiceVip[];
  /** its published ports with every port assigned (Docker's Endpoint.Ports) */
  ports?: PortConfig[];
  /** a job: when its current iteration (specVersion) began (JobStatus.LastExecution) */
  lastExecution?: string;
}

export interface ServiceVip {
  networkId: string;
  ip: string;
}

export interface TaskNetwork {
  networkId: string;
  attachmentId: string;
  ip: string;
  mac: string;
}

export interface TaskRecord extends Meta {
  id: string;
  serviceId: string;
  serviceName: string;
  slot: number;
  nodeId: string;
  specVersion: number;
  spec: ServiceSpec;
  desiredState: TaskState;
  state: TaskState;
  message: string;
  err: string;
  /** when state last changed */
  timestamp: string;
  containerId: string;
  exitCode: number | null;
  networks: TaskNetwork[];
}

/** What a node holds when its session starts: every task container and every node-local endpoint. */
/** A node's live session with a manager: the key exists while the session does (on that manager's lease). */
export interface SessionRecord {
  nodeId: string;
  /** the manager node serving it, and its API address */
  manager: string;
  managerAddr: string;
  openedAt: string;
  /** the node said goodbye (a planned stop): it counts as up until then, as down after */
  goodbyeUntil?: string;
}

export interface NodeReport {
  tasks: { id: string; status: 'created' | 'running' | 'exited' | 'dead'; exitCode: number; containerId: string }[];
  /** tasks the node is preparing (no container yet) */
  starting: string[];
  /** IDs of its node-local attachments */
  attachments: string[];
  /** endpoints of its own being made as it reported: an attachment it does not list yet may be one */
  creating?: number;
}

/** A task's status as its node reports it. */
export interface TaskStatusReport {
  state: TaskState;
  message: string;
  err?: string;
  containerId?: string;
  exitCode?: number;
}

/** A task's name, as Docker names its container: <service>.<slot>.<task>, or <service>.<node>.<task> for a global service. */
export function taskName(t: Pick<TaskRecord, 'serviceName' | 'slot' | 'nodeId' | 'id'>): string {
  return `${t.serviceName}.${t.slot === 0 ? t.nodeId : t.slot}.${t.id}`;
}
