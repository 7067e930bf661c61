// Docker's `local` volume driver: a volume is a directory under --root/volumes/<name>/_data on the
// node that uses it, made by `volume create` or on demand by the first task that mounts it, kept
// until removed (refused while a container uses it).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ConflictError, InvalidArgumentError, NotFoundError } from '../core/errors.js';

export interface VolumeRecord {
  name: string;
  driver: 'local';
  labels: Record<string, string>;
  createdAt: string;
  /** made without a name (a mount with no source): `volume prune` takes these by default */
  anonymous: boolean;
}

/** Docker's rule for a volume name. */
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export function checkVolumeName(name: string): void {
  if (!NAME_RE.test(name))
    throw new InvalidArgumentError(
      `create ${name}: "${name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed`,
    );
}

export class VolumeStore {
  private readonly records = new Map<string, VolumeRecord>();

  /** Reads the records once, at the daemon's start (before gossip or any session runs). */
  constructor(readonly root: string) {
    fs.mkdirSync(root, { recursive: true, mode: 0o701 });
    for (const name of fs.readdirSync(root)) {
      try {
        this.records.set(name, JSON.parse(fs.readFileSync(path.join(root, name, 'volume.json'), 'utf8')) as VolumeRecord);
      } catch {
        // a directory half made by a crash: it holds no record, so nothing refers to it
      }
    }
  }

  list(): VolumeRecord[] {
    return [...this.records.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): VolumeRecord {
    const v = this.records.get(name);
    if (!v) throw new NotFoundError(`get ${name}: no such volume`);
    return v;
  }

  find(name: string): VolumeRecord | undefined {
    return this.records.get(name);
  }

  /** Where the volume's data lives on this node. */
  dataPath(name: string): string {
    return path.join(this.root, name, '_data');
  }

  /** Makes the volume (an existing one of that name is returned as it is, as Docker does); `created` says which. */
  async create(o: { name?: string; labels?: Record<string, string> }): Promise<{ volume: VolumeRecord; created: boolean }> {
    const name = o.name || randomBytes(32).toString('hex');
    checkVolumeName(name);
    const had = this.records.get(name);
    if (had) return { volume: had, created: false };
    const v: VolumeRecord = { name, driver: 'local', labels: o.labels ?? {}, createdAt: new Date().toISOString(), anonymous: !o.name };
    await fs.promises.mkdir(this.dataPath(name), { recursive: true, mode: 0o755 });
    await fs.promises.writeFile(path.join(this.root, name, 'volume.json'), JSON.stringify(v), { mode: 0o600 });
    this.records.set(name, v);
    return { volume: v, created: true };
  }

  /** Removes the volume and its data; refused while `users` (container IDs) is not empty. */
  async remove(name: string, users: string[]): Promise<void> {
    this.get(name);
    if (users.length) throw new ConflictError(`remove ${name}: volume is in use - [${users.join(', ')}]`);
    this.records.delete(name);
    await fs.promises.rm(path.join(this.root, name), { recursive: true, force: true });
  }
}

/** A mount of a service's containers (Docker's Mount), as the spec asks for it. */
export interface MountSpec {
  type: 'volume' | 'bind' | 'tmpfs';
  /** a volume's name (empty: a new anonymous one for each container), a bind's host path; none for tmpfs */
  source: string;
  target: string;
  readOnly: boolean;
  /** a volume made on demand gets these labels */
  volumeLabels?: Record<string, string>;
  /** a new volume is not filled with what the image has at the target */
  noCopy?: boolean;
  /** tmpfs size in bytes and mode bits; 0 or absent: the kernel's defaults */
  tmpfsSize?: number;
  tmpfsMode?: number;
}

/** A container's mount as the runtime makes it: a host path bound in, or a tmpfs. */
export interface ContainerMount {
  type: 'volume' | 'bind' | 'tmpfs';
  /** the volume's name */
  name?: string;
  /** host path (volume data or bind source); '' for tmpfs */
  source: string;
  destination: string;
  readOnly: boolean;
  /** tmpfs options (size=, mode=) */
  options?: string[];
  /** a volume made for this container: filled from the image at the target first */
  copyUp?: boolean;
}

/** Docker's checks of a service's mounts; the message is the error to answer with. */
export function checkMounts(mounts: MountSpec[]): void {
  const seen = new Set<string>();
  for (const m of mounts) {
    if (!m.target.startsWith('/')) throw new InvalidArgumentError(`invalid mount target, must be an absolute path: ${m.target}`);
    if (seen.has(m.target)) throw new InvalidArgumentError(`duplicate mount point: ${m.target}`);
    seen.add(m.target);
    if (m.type === 'bind') {
      if (!m.source) throw new InvalidArgumentError('invalid mount config for type "bind": field Source must not be empty');
      if (!m.source.startsWith('/'))
        throw new InvalidArgumentError(`invalid mount config for type "bind": invalid mount path: '${m.source}' mount path must be absolute`);
    } else if (m.type === 'volume') {
      if (m.source) checkVolumeName(m.source);
    } else if (m.type === 'tmpfs') {
      if (m.source) throw new InvalidArgumentError('invalid mount config for type "tmpfs": field Source must not be specified');
    } else throw new InvalidArgumentError(`invalid mount config: mount type unknown: ${String((m as { type: unknown }).type)}`);
  }
}
