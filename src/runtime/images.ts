// The content-addressed image store under <root>/images: unpacked layers keyed by their diff ID,
// image records keyed by the digest of their config, and a tag index. Layers are shared between
// images and unpacked once; containers stack them with overlayfs.
import { execFile, spawn } from 'node:child_process';
import type { ImageHealthcheck } from './health.js';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { ConflictError, InvalidArgumentError, NotFoundError, VxError } from '../core/errors.js';
import { Mutex } from '../core/mutex.js';
import { parseRef } from './reference.js';

export interface ImageConfig {
  Env?: string[];
  Cmd?: string[];
  Entrypoint?: string[];
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string>;
  Healthcheck?: ImageHealthcheck;
}

export interface ImageRecord {
  /** sha256:<hex of the config blob> */
  id: string;
  repoTags: string[];
  repoDigests: string[];
  created: string;
  architecture: string;
  os: string;
  config: ImageConfig;
  /** uncompressed layer digests, bottom-most first */
  diffIds: string[];
  size: number;
}

/** The OCI image config JSON, as far as we read it. */
interface OciConfig {
  created?: string;
  architecture?: string;
  os?: string;
  config?: ImageConfig;
  rootfs?: { type: string; diff_ids: string[] };
}

const HEX64 = /^[a-f0-9]{64}$/;

export class ImageStore {
  private readonly lock = new Mutex();
  constructor(readonly root: string) {
    for (const d of ['layers', 'images', 'tmp']) fs.mkdirSync(path.join(root, d), { recursive: true, mode: 0o700 });
    // Half-written layers and archives from a crash.
    for (const f of fs.readdirSync(path.join(root, 'tmp'))) fs.rmSync(path.join(root, 'tmp', f), { recursive: true, force: true });
  }

  private get tagsFile(): string {
    return path.join(this.root, 'repositories.json');
  }
  private tags(): Record<string, string> {
    try {
      return JSON.parse(fs.readFileSync(this.tagsFile, 'utf8')) as Record<string, string>;
    } catch {
      return {};
    }
  }
  private saveTags(t: Record<string, string>): void {
    fs.writeFileSync(`${this.tagsFile}.tmp`, JSON.stringify(t, null, 2));
    fs.renameSync(`${this.tagsFile}.tmp`, this.tagsFile);
  }

  list(): ImageRecord[] {
    const tags = this.tags();
    return fs
      .readdirSync(path.join(this.root, 'images'))
      .filter((f) => f.endsWith('.json'))
      .map((f) => this.readRecord(`sha256:${f.slice(0, -5)}`, tags))
      .filter((r): r is ImageRecord => !!r)
      .sort((a, b) => b.created.localeCompare(a.created));
  }

  private readRecord(id: string, tags = this.tags()): ImageRecord | undefined {
    try {
      const r = JSON.parse(fs.readFileSync(path.join(this.root, 'images', `${id.slice(7)}.json`), 'utf8')) as ImageRecord;
      r.repoTags = Object.entries(tags)
        .filter(([, v]) => v === id)
        .map(([k]) => k)
        .sort();
      return r;
    } catch {
      return undefined;
    }
  }

  /** Finds an image by tag (busybox → busybox:latest), full ID, or unique ID prefix. */
  find(ref: string): ImageRecord | undefined {
    const tags = this.tags();
    const bare = ref.replace(/^sha256:/, '');
    if (/^[a-f0-9]{4,64}$/.test(bare)) {
      const hits = fs.readdirSync(path.join(this.root, 'images')).filter((f) => f.startsWith(bare));
      if (hits.length === 1) return this.readRecord(`sha256:${hits[0]!.slice(0, -5)}`, tags);
    }
    let key: string;
    try {
      const p = parseRef(ref);
      key = p.familiar;
      if (p.digest) return this.list().find((i) => i.repoDigests.some((d) => d.endsWith(p.digest!)));
    } catch {
      return undefined;
    }
    const id = tags[key];
    return id ? this.readRecord(id, tags) : undefined;
  }

  get(ref: string): ImageRecord {
    const img = this.find(ref);
    if (!img) throw new NotFoundError(`No such image: ${ref}`);
    return img;
  }

  /** Unpacked layer directories, top-most first (the order overlayfs wants). */
  layerDirs(img: ImageRecord): string[] {
    return img.diffIds.map((d) => path.join(this.root, 'layers', d.slice(7))).reverse();
  }

  tag(id: string, ref: string): void {
    const key = parseRef(ref).familiar;
    const t = this.tags();
    t[key] = id;
    this.saveTags(t);
  }

  remove(ref: string, inUse: (id: string) => boolean): string[] {
    const img = this.get(ref);
    if (inUse(img.id))
      throw new ConflictError(`conflict: unable to remove repository reference "${ref}" - image ${img.id.slice(7, 19)} is being used by a container`);
    const t = this.tags();
    // Removing one of several tags only untags.
    const key = parseRefSafe(ref);
    if (key && img.repoTags.includes(key) && img.repoTags.length > 1) {
      delete t[key];
      this.saveTags(t);
      return [`Untagged: ${key}`];
    }
    for (const k of img.repoTags) delete t[k];
    this.saveTags(t);
    fs.rmSync(path.join(this.root, 'images', `${img.id.slice(7)}.json`), { force: true });
    const out = [...img.repoTags.map((k) => `Untagged: ${k}`), `Deleted: ${img.id}`];
    // Layers no other image uses go too.
    const used = new Set(this.list().flatMap((i) => i.diffIds));
    for (const d of img.diffIds) if (!used.has(d)) fs.rmSync(path.join(this.root, 'layers', d.slice(7)), { recursive: true, force: true });
    return out;
  }

  /** A temp dir inside the store (same filesystem, so finished layers are renamed into place). */
  tempDir(): string {
    return fs.mkdtempSync(path.join(this.root, 'tmp', 'x-'));
  }

  /** Unpacks one layer tarball (plain or gzip) unless a layer with its diff ID exists; returns the diff ID. */
  async addLayer(file: string, expectDiffId?: string): Promise<string> {
    const diffId = `sha256:${await uncompressedDigest(file)}`;
    if (expectDiffId && expectDiffId !== diffId) throw new InvalidArgumentError(`layer content ${diffId} does not match the image config's ${expectDiffId}`);
    const dest = path.join(this.root, 'layers', diffId.slice(7));
    if (fs.existsSync(dest)) return diffId;
    const tmp = this.tempDir();
    await untar(file, tmp);
    await convertWhiteouts(tmp);
    fs.renameSync(tmp, dest);
    return diffId;
  }

  /** Records an image from its config blob and the (already added) layers; tags it. */
  addImage(configBlob: Buffer, diffIds: string[], tags: string[], repoDigest?: string): ImageRecord {
    const id = `sha256:${createHash('sha256').update(configBlob).digest('hex')}`;
    let cfg: OciConfig;
    try {
      cfg = JSON.parse(configBlob.toString('utf8')) as OciConfig;
    } catch {
      throw new InvalidArgumentError('image config is not valid JSON');
    }
    const want = cfg.rootfs?.diff_ids ?? diffIds;
    if (want.length !== diffIds.length || want.some((d, i) => d !== diffIds[i])) throw new InvalidArgumentError('image layers do not match its config');
    const size = diffIds.reduce((s, d) => s + dirSize(path.join(this.root, 'layers', d.slice(7))), 0);
    const prev = this.readRecord(id);
    const rec: ImageRecord = {
      id,
      repoTags: [],
      repoDigests: [...new Set([...(prev?.repoDigests ?? []), ...(repoDigest ? [repoDigest] : [])])],
      created: cfg.created ?? new Date().toISOString(),
      architecture: cfg.architecture ?? 'amd64',
      os: cfg.os ?? 'linux',
      config: cfg.config ?? {},
      diffIds,
      size,
    };
    fs.writeFileSync(path.join(this.root, 'images', `${id.slice(7)}.json`), JSON.stringify(rec));
    for (const t of tags) this.tag(id, t);
    return this.readRecord(id)!;
  }

  /** `docker import`: a root filesystem tarball becomes a one-layer image. */
  importRootfs(body: Readable, ref: string | undefined, config: ImageConfig = {}): Promise<ImageRecord> {
    if (ref) parseRef(ref);
    return this.lock.lock(async () => {
      const tmp = this.tempDir();
      try {
        const file = path.join(tmp, 'layer.tar');
        await pipeline(body, fs.createWriteStream(file));
        if (fs.statSync(file).size === 0) throw new InvalidArgumentError('the imported tarball is empty');
        const diffId = await this.addLayer(file);
        const cfg = {
          architecture: 'amd64',
          os: 'linux',
          created: new Date().toISOString(),
          config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], ...config },
          rootfs: { type: 'layers', diff_ids: [diffId] },
        };
        return this.addImage(Buffer.from(JSON.stringify(cfg)), [diffId], ref ? [ref] : []);
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    });
  }

  /** `docker load`: a docker-archive (manifest.json) or OCI image layout (index.json) tarball. */
  load(body: Readable): Promise<string[]> {
    return this.lock.lock(async () => {
      const tmp = this.tempDir();
      try {
        const file = path.join(tmp, 'archive.tar');
        await pipeline(body, fs.createWriteStream(file));
        const dir = path.join(tmp, 'x');
        fs.mkdirSync(dir);
        await untar(file, dir).catch((e: unknown) => {
          throw new InvalidArgumentError(`not a tar archive: ${(e as Error).message}`);
        });
        const out: string[] = [];
        if (fs.existsSync(path.join(dir, 'manifest.json'))) {
          const manifest = readJsonIn<{ Config: string; RepoTags?: string[] | null; Layers: string[] }[]>(dir, 'manifest.json');
          for (const m of manifest) {
            const cfgBlob = fs.readFileSync(insidePath(dir, m.Config));
            const diffIds: string[] = [];
            for (const l of m.Layers) diffIds.push(await this.addLayer(insidePath(dir, l)));
            const img = this.addImage(cfgBlob, diffIds, m.RepoTags ?? []);
            out.push(...(m.RepoTags?.length ? m.RepoTags.map((t) => `Loaded image: ${t}`) : [`Loaded image ID: ${img.id}`]));
          }
        } else if (fs.existsSync(path.join(dir, 'index.json'))) {
          const index = readJsonIn<{ manifests: { digest: string; annotations?: Record<string, string> }[] }>(dir, 'index.json');
          for (const d of index.manifests) {
            const man = JSON.parse(fs.readFileSync(blobPath(dir, d.digest), 'utf8')) as { config: { digest: string }; layers: { digest: string }[] };
            const cfgBlob = fs.readFileSync(blobPath(dir, man.config.digest));
            const diffIds: string[] = [];
            for (const l of man.layers) diffIds.push(await this.addLayer(blobPath(dir, l.digest)));
            const name = d.annotations?.['io.containerd.image.name'] ?? d.annotations?.['org.opencontainers.image.ref.name'];
            const tags = name && !/^[\w][\w.-]*$/.test(name) ? [name] : [];
            const img = this.addImage(cfgBlob, diffIds, tags);
            out.push(...(tags.length ? tags.map((t) => `Loaded image: ${t}`) : [`Loaded image ID: ${img.id}`]));
          }
        } else {
          throw new InvalidArgumentError('the archive has neither manifest.json (docker save) nor index.json (OCI layout)');
        }
        return out;
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    });
  }

  /** Runs fn under the store's lock (pulls write layers and tags like load does). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.lock(fn);
  }
}

function parseRefSafe(ref: string): string | undefined {
  try {
    return parseRef(ref).familiar;
  } catch {
    return undefined;
  }
}

/** A path named inside an archive, refused if it climbs out of it. */
function insidePath(dir: string, rel: string): string {
  const p = path.resolve(dir, rel);
  if (!p.startsWith(`${dir}/`)) throw new InvalidArgumentError(`archive entry ${rel} points outside the archive`);
  return p;
}

function blobPath(dir: string, digest: string): string {
  const [alg, hex] = digest.split(':');
  if (alg !== 'sha256' || !hex || !HEX64.test(hex)) throw new InvalidArgumentError(`unsupported digest ${digest}`);
  return path.join(dir, 'blobs', 'sha256', hex);
}

function readJsonIn<T>(dir: string, name: string): T {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as T;
  } catch {
    throw new InvalidArgumentError(`${name} in the archive is not valid JSON`);
  }
}

export async function uncompressedDigest(file: string): Promise<string> {
  const fd = fs.openSync(file, 'r');
  const magic = Buffer.alloc(2);
  fs.readSync(fd, magic, 0, 2, 0);
  fs.closeSync(fd);
  const h = createHash('sha256');
  const src = fs.createReadStream(file);
  if (magic[0] === 0x1f && magic[1] === 0x8b) await pipeline(src, createGunzip(), h);
  else await pipeline(src, h);
  return h.digest('hex');
}

/** GNU tar keeps owners, modes, devices and xattrs as root; it detects gzip by itself. */
export function untar(file: string, dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('tar', ['-x', '-f', file, '-C', dir, '--numeric-owner', '--same-permissions', '--xattrs', '--xattrs-include=*', '--same-owner'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new VxError(`unpacking ${path.basename(file)}: ${err.trim() || `tar exited ${code}`}`, 400))));
  });
}

/** OCI whiteouts (.wh.name, .wh..wh..opq) become overlayfs ones (0:0 char devices, the opaque xattr). */
async function convertWhiteouts(dir: string): Promise<void> {
  const walk = async (d: string): Promise<void> => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.name === '.wh..wh..opq') {
        fs.rmSync(p);
        await run('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', d]);
      } else if (e.name.startsWith('.wh.')) {
        fs.rmSync(p, { recursive: true, force: true });
        const w = path.join(d, e.name.slice(4));
        if (!(await run('mknod', [w, 'c', '0', '0']))) throw new VxError(`could not create whiteout ${w}`, 500);
      } else if (e.isDirectory()) {
        await walk(p);
      }
    }
  };
  await walk(dir);
}

/** A helper command, off the event loop; true when it exited 0. */
function run(cmd: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => execFile(cmd, args, (err) => resolve(!err)));
}

function dirSize(d: string): number {
  let n = 0;
  const walk = (p: string): void => {
    for (const e of fs.readdirSync(p, { withFileTypes: true })) {
      const q = path.join(p, e.name);
      if (e.isDirectory()) walk(q);
      else if (e.isFile()) n += fs.lstatSync(q).size;
    }
  };
  walk(d);
  return n;
}
