// Pulls images from any registry speaking the Docker/OCI distribution API (v2), with bearer-token
// auth as Docker Hub and docker-registry's token mode use. Loopback registries are spoken to over
// plain HTTP, as Docker treats 127.0.0.0/8 as insecure by default; everything else over HTTPS.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { NotFoundError, VxError } from '../core/errors.js';
import type { ImageRecord, ImageStore } from './images.js';
import { parseRef } from './reference.js';

const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

interface Manifest {
  mediaType?: string;
  manifests?: { digest: string; platform?: { os: string; architecture: string } }[];
  config?: { digest: string };
  layers?: { digest: string }[];
}

export type Progress = (status: string, id?: string) => void;

function baseUrl(registry: string | undefined): string {
  if (!registry) return 'https://registry-1.docker.io';
  const host = registry.replace(/:\d+$/, '');
  const insecure = host === 'localhost' || /^127\./.test(host) || host === '[::1]';
  return `${insecure ? 'http' : 'https'}://${registry}`;
}

class RegistrySession {
  private token?: string;
  constructor(
    private readonly base: string,
    private readonly repo: string,
  ) {}

  async get(urlPath: string, accept?: string): Promise<Response> {
    const headers: Record<string, string> = {};
    if (accept) headers.accept = accept;
    let res = await this.fetch(urlPath, headers);
    if (res.status === 401 && !this.token) {
      await this.authenticate(res.headers.get('www-authenticate') ?? '');
      res = await this.fetch(urlPath, headers);
    }
    return res;
  }

  private fetch(urlPath: string, headers: Record<string, string>): Promise<Response> {
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    return fetch(`${this.base}${urlPath}`, { headers, redirect: 'follow', signal: AbortSignal.timeout(60_000) }).catch((e: unknown) => {
      throw new VxError(
        `registry ${this.base} unreachable: ${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}`,
        500,
      );
    });
  }

  private async authenticate(challenge: string): Promise<void> {
    const m = /^Bearer\s+(.*)$/i.exec(challenge);
    if (!m) throw new VxError(`registry ${this.base} wants credentials (${challenge || 'no challenge'})`, 401);
    const params = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (!params.realm) throw new VxError(`registry ${this.base}: bearer challenge without a realm`, 500);
    const u = new URL(params.realm);
    if (params.service) u.searchParams.set('service', params.service);
    u.searchParams.set('scope', params.scope ?? `repository:${this.repo}:pull`);
    const res = await fetch(u, { signal: AbortSignal.timeout(30_000) });
    if (!res.ok) throw new VxError(`token request to ${u.origin} failed: ${res.status}`, 401);
    const body = (await res.json()) as { token?: string; access_token?: string };
    this.token = body.token ?? body.access_token;
    if (!this.token) throw new VxError(`token server ${u.origin} returned no token`, 401);
  }
}

async function fetchManifest(s: RegistrySession, repo: string, ref: string): Promise<{ manifest: Manifest; digest: string; raw: Buffer }> {
  const res = await s.get(`/v2/${repo}/manifests/${ref}`, MANIFEST_TYPES);
  if (res.status === 404) throw new NotFoundError(`manifest for ${repo}:${ref} not found: manifest unknown`);
  if (!res.ok) throw new VxError(`registry answered ${res.status} for the manifest of ${repo}:${ref}`, res.status === 401 ? 401 : 500);
  const raw = Buffer.from(await res.arrayBuffer());
  const digest = `sha256:${createHash('sha256').update(raw).digest('hex')}`;
  return { manifest: JSON.parse(raw.toString('utf8')) as Manifest, digest, raw };
}

async function fetchBlob(s: RegistrySession, repo: string, digest: string, file: string): Promise<void> {
  const res = await s.get(`/v2/${repo}/blobs/${digest}`);
  if (!res.ok || !res.body) throw new VxError(`registry answered ${res.status} for blob ${digest}`, 500);
  const h = createHash('sha256');
  const src = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  src.on('data', (c: Buffer) => h.update(c));
  await pipeline(src, fs.createWriteStream(file));
  const got = `sha256:${h.digest('hex')}`;
  if (got !== digest) throw new VxError(`blob ${digest} arrived with digest ${got}`, 500);
}

/** Pulls `ref` into the store and tags it; reports progress lines like `docker pull` prints. */
export function pullImage(store: ImageStore, input: string, progress: Progress = () => undefined): Promise<ImageRecord> {
  const ref = parseRef(input);
  const s = new RegistrySession(baseUrl(ref.registry), ref.repo);
  return store.exclusive(async () => {
    progress(`Pulling from ${ref.familiar.replace(/:[^:/]+$/, '')}`, ref.tag);
    let { manifest, digest } = await fetchManifest(s, ref.repo, ref.digest ?? ref.tag);
    if (manifest.manifests) {
      const pick = manifest.manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === 'amd64');
      if (!pick) throw new NotFoundError(`no matching manifest for linux/amd64 in the manifest list of ${ref.familiar}`);
      ({ manifest, digest } = await fetchManifest(s, ref.repo, pick.digest));
    }
    if (!manifest.config || !manifest.layers) throw new VxError(`unsupported manifest type ${manifest.mediaType ?? '(none)'}`, 500);
    const tmp = store.tempDir();
    try {
      const cfgFile = path.join(tmp, 'config.json');
      await fetchBlob(s, ref.repo, manifest.config.digest, cfgFile);
      const cfgBlob = fs.readFileSync(cfgFile);
      const diffIdsWanted = (JSON.parse(cfgBlob.toString('utf8')) as { rootfs?: { diff_ids?: string[] } }).rootfs?.diff_ids ?? [];
      const diffIds: string[] = [];
      for (const [i, l] of manifest.layers.entries()) {
        const short = l.digest.slice(7, 19);
        const have = diffIdsWanted[i] && fs.existsSync(path.join(store.root, 'layers', diffIdsWanted[i].slice(7)));
        if (have) {
          progress('Already exists', short);
          diffIds.push(diffIdsWanted[i]!);
          continue;
        }
        const f = path.join(tmp, `layer-${i}`);
        await fetchBlob(s, ref.repo, l.digest, f);
        diffIds.push(await store.addLayer(f, diffIdsWanted[i]));
        fs.rmSync(f);
        progress('Pull complete', short);
      }
      const repoDigest = `${ref.familiar.replace(/:[^:/]+$/, '')}@${digest}`;
      const img = store.addImage(cfgBlob, diffIds, ref.digest ? [] : [ref.familiar], repoDigest);
      progress(`Digest: ${digest}`);
      return img;
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
}
