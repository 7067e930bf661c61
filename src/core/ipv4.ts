// IPv4 addresses and prefixes as unsigned 32-bit integers. Parsers throw
// InvalidArgumentError with the offending text, so callers can pass user input straight in.
import { InvalidArgumentError } from './errors.js';

export interface Cidr {
  /** Network address (host bits zero). */
  readonly network: number;
  readonly prefix: number;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function parseIp(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) throw new InvalidArgumentError(`invalid IPv4 address "${text}"`);
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0) >>> 0;
}

export function isIp(text: string): boolean {
  try {
    parseIp(text);
    return true;
  } catch {
    return false;
  }
}

export function formatIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses "a.b.c.d/n"; host bits must be zero, as Docker requires for --subnet. */
export function parseCidr(text: string): Cidr {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text);
  if (!m) throw new InvalidArgumentError(`invalid CIDR "${text}": expected a.b.c.d/len`);
  const prefix = Number(m[2]);
  if (prefix > 32) throw new InvalidArgumentError(`invalid CIDR "${text}": prefix length ${prefix} exceeds 32`);
  let ip: number;
  try {
    ip = parseIp(m[1]!);
  } catch {
    throw new InvalidArgumentError(`invalid CIDR "${text}": "${m[1]}" is not an IPv4 address`);
  }
  const network = (ip & maskOf(prefix)) >>> 0;
  if (network !== ip) throw new InvalidArgumentError(`invalid CIDR "${text}": host bits set (did you mean ${formatIp(network)}/${prefix}?)`);
  return { network, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.network)}/${c.prefix}`;
}

export function contains(c: Cidr, ip: number): boolean {
  return (ip & maskOf(c.prefix)) >>> 0 === c.network;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return (a.network & maskOf(p)) >>> 0 === (b.network & maskOf(p)) >>> 0;
}

export function broadcastOf(c: Cidr): number {
  return (c.network | (~maskOf(c.prefix) >>> 0)) >>> 0;
}

export function sizeOf(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function ipToBuffer(ip: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ip >>> 0);
  return b;
}

export function bufferToIp(b: Buffer): number {
  return b.readUInt32BE(0);
}
