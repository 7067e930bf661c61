// The OCI runtime spec (runc's config.json) for a container, as Docker builds it: its own
// namespaces (the network one made by us and wired to the overlay), Docker's default capability
// set (with NET_RAW, so ping works), the usual /proc /dev /sys mounts, and the generated
// /etc/hosts, /etc/hostname and /etc/resolv.conf bind-mounted in.

/** the CFS period a CPU limit is a quota of (Docker's default) */
const CFS_PERIOD_US = 100_000;

export const DEFAULT_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ProcessSpecInput {
  args: string[];
  env: string[];
  cwd: string;
  /** uid[:gid], numeric only (names would need the image's /etc/passwd) */
  user?: string;
}

export interface ContainerSpecInput extends ProcessSpecInput {
  rootfs: string;
  hostname: string;
  netnsPath: string;
  cgroupsPath: string;
  /** files to bind at /etc/hosts, /etc/hostname, /etc/resolv.conf */
  etc: { hosts: string; hostname: string; resolvConf: string };
  memoryLimit?: number;
  /** CPU limit in billionths of a CPU: a CFS quota over a 100 ms period */
  nanoCpus?: number;
  /** the memory cgroup's soft limit (Docker's MemoryReservation), bytes */
  memoryReservation?: number;
  pidsLimit?: number;
  /** volumes and binds (host paths) and tmpfs mounts, after the runtime's own */
  mounts?: { destination: string; type: 'bind' | 'tmpfs'; source: string; options: string[] }[];
}

/** Splits "uid[:gid]"; a non-numeric user is refused rather than silently run as root. */
export function parseUser(user: string | undefined): { uid: number; gid: number } {
  if (!user) return { uid: 0, gid: 0 };
  const m = /^(\d+)(?::(\d+))?$/.exec(user);
  if (!m) throw new Error(`unable to find user ${user}: only numeric uid[:gid] is supported`);
  return { uid: Number(m[1]), gid: Number(m[2] ?? m[1]) };
}

/** Env with PATH defaulted, later entries overriding earlier ones of the same name. */
export function mergeEnv(...lists: (string[] | undefined)[]): string[] {
  const m = new Map<string, string>();
  for (const l of lists) for (const e of l ?? []) m.set(e.split('=')[0]!, e);
  if (!m.has('PATH')) m.set('PATH', DEFAULT_PATH);
  return [...m.values()];
}

export function processSpec(p: ProcessSpecInput, terminal: boolean): Record<string, unknown> {
  const caps = DEFAULT_CAPS;
  return {
    terminal,
    user: parseUser(p.user),
    args: p.args,
    env: mergeEnv(p.env),
    cwd: p.cwd || '/',
    capabilities: { bounding: caps, effective: caps, permitted: caps },
    noNewPrivileges: false,
  };
}

export function buildOciSpec(c: ContainerSpecInput): Record<string, unknown> {
  const resources: Record<string, unknown> = { devices: [{ allow: false, access: 'rwm' }] };
  if (c.memoryLimit || c.memoryReservation)
    resources.memory = { ...(c.memoryLimit ? { limit: c.memoryLimit } : {}), ...(c.memoryReservation ? { reservation: c.memoryReservation } : {}) };
  if (c.nanoCpus) resources.cpu = { quota: Math.round((c.nanoCpus * CFS_PERIOD_US) / 1e9), period: CFS_PERIOD_US };
  if (c.pidsLimit) resources.pids = { limit: c.pidsLimit };
  const bind = (src: string, dst: string): Record<string, unknown> => ({ destination: dst, type: 'bind', source: src, options: ['rbind', 'rprivate'] });
  return {
    ociVersion: '1.0.2-dev',
    process: processSpec(c, false),
    root: { path: c.rootfs, readonly: false },
    hostname: c.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
      bind(c.etc.hosts, '/etc/hosts'),
      bind(c.etc.hostname, '/etc/hostname'),
      bind(c.etc.resolvConf, '/etc/resolv.conf'),
      ...(c.mounts ?? []),
    ],
    linux: {
      cgroupsPath: c.cgroupsPath,
      resources,
      namespaces: [{ type: 'pid' }, { type: 'network', path: c.netnsPath }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: [
        '/proc/acpi',
        '/proc/asound',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/sys/firmware',
        '/proc/scsi',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** /etc/hosts as Docker writes it: loopback lines, then the container's own addresses. */
export function hostsFile(hostname: string, ips: string[], extra: string[] = []): string {
  const lines = [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'ff00::0\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
    ...ips.map((ip) => `${ip}\t${hostname}`),
    ...extra,
  ];
  return `${lines.join('\n')}\n`;
}

/** The embedded resolver; ndots:0 as Docker sets for swarm tasks. */
export function resolvConf(): string {
  return 'nameserver 127.0.0.11\noptions ndots:0\n';
}
