// Image references as Docker reads them: [registry/]repo[:tag][@digest]; "busybox" is busybox:latest.
import { InvalidArgumentError } from '../core/errors.js';

export interface ImageRef {
  /** registry host[:port], or undefined for Docker Hub */
  registry?: string;
  /** repository path inside the registry (library/ added for Hub's official images) */
  repo: string;
  tag: string;
  digest?: string;
  /** the short form Docker prints and stores tags under: busybox:latest, 127.0.0.1:5000/x:1 */
  familiar: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;

export function parseRef(input: string): ImageRef {
  const s = input.trim();
  if (!s || s.length > 255) throw new InvalidArgumentError(`invalid reference format: "${input}"`);
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new InvalidArgumentError(`invalid reference format: bad digest in "${input}"`);
  }
  let tag = 'latest';
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new InvalidArgumentError(`invalid reference format: bad tag in "${input}"`);
  }
  const parts = rest.split('/');
  let registry: string | undefined;
  if (parts.length > 1 && (parts[0]!.includes('.') || parts[0]!.includes(':') || parts[0] === 'localhost')) registry = parts.shift();
  if (registry === 'docker.io' || registry === 'index.docker.io') registry = undefined;
  if (parts.length === 0 || !parts.every((p) => COMPONENT.test(p))) {
    throw new InvalidArgumentError(`invalid reference format: repository name must be lowercase letters, digits and separators: "${input}"`);
  }
  let repo = parts.join('/');
  let shortRepo = repo;
  if (!registry) {
    if (parts.length === 1) repo = `library/${repo}`;
    shortRepo = repo.startsWith('library/') ? repo.slice(8) : repo;
  } else {
    shortRepo = `${registry}/${repo}`;
  }
  return { registry, repo, tag, digest, familiar: `${shortRepo}:${tag}` };
}
