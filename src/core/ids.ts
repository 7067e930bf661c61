import { randomBytes } from 'node:crypto';

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
/** xx:xx:xx:xx:xx:xx, lowercase (hot: every FDB entry of a dump goes through here). */
export function formatMac(b: Uint8Array): string {
  let s = HEX[b[0]!]!;
  for (let i = 1; i < b.length; i++) s += `:${HEX[b[i]!]!}`;
  return s;
}

/** A random locally administered, unicast MAC (first octet x2/x6/xA/xE). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return formatMac(b);
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
export function isMac(s: string): boolean {
  return MAC_RE.test(s);
}

/** Lowercase base36 of `bytes`, zero-padded to `width` (swarm IDs and tokens use this). */
export function base36(bytes: Buffer, width: number): string {
  const s = BigInt(`0x${bytes.toString('hex') || '0'}`).toString(36);
  return s.padStart(width, '0');
}

/** A swarm object ID: 128 random bits as 25 base36 characters, like swarmkit's. */
export function newId(): string {
  return base36(randomBytes(16), 25);
}
