// Join tokens: SWMTKN-1-<SHA-256 of the root CA, base36, 50 chars>-<secret, base36, 25 chars>.
// The digest pins the CA, so a joiner can check the manager before sending the secret.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '../../core/errors.js';
import { base36 } from '../../core/ids.js';

export interface ParsedToken {
  version: 1;
  caDigest: string;
  secret: string;
}

const TOKEN_RE = /^SWMTKN-1-([0-9a-z]{50})-([0-9a-z]{25})$/;

export function caDigest(caDer: Buffer): string {
  return base36(createHash('sha256').update(caDer).digest(), 50);
}

export function newSecret(): string {
  return base36(randomBytes(16), 25);
}

export function formatToken(digest: string, secret: string): string {
  return `SWMTKN-1-${digest}-${secret}`;
}

export function parseToken(token: string): ParsedToken {
  const m = typeof token === 'string' ? TOKEN_RE.exec(token.trim()) : null;
  if (!m) throw new InvalidArgumentError('invalid join token: expected SWMTKN-1-<50 base36 characters>-<25 base36 characters>');
  return { version: 1, caDigest: m[1]!, secret: m[2]! };
}

/** Constant-time comparison of two secrets. */
export function secretsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
