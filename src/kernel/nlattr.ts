// Netlink attribute (TLV) encoding: 2-byte length, 2-byte type, value padded to 4.
export const NLA_F_NESTED = 0x8000;

export type Attr = Buffer;

const align4 = (n: number): number => (n + 3) & ~3;

export function attr(type: number, value: Buffer): Attr {
  const len = 4 + value.length;
  const b = Buffer.alloc(align4(len));
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  value.copy(b, 4);
  return b;
}

export const u8 = (type: number, v: number): Attr => attr(type, Buffer.from([v & 0xff]));
export function u16(type: number, v: number): Attr {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return attr(type, b);
}
export function u16be(type: number, v: number): Attr {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return attr(type, b);
}
export function u32(type: number, v: number): Attr {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return attr(type, b);
}
export const str = (type: number, s: string): Attr => attr(type, Buffer.from(`${s}\0`));
export const nested = (type: number, children: Attr[]): Attr => attr(type | NLA_F_NESTED, Buffer.concat(children));

/** Parses a run of attributes into a map of type → value (last one wins; nested flag stripped). */
export function parseAttrs(buf: Buffer, offset = 0): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let o = offset;
  while (o + 4 <= buf.length) {
    const len = buf.readUInt16LE(o);
    if (len < 4 || o + len > buf.length) break;
    const type = buf.readUInt16LE(o + 2) & 0x3fff;
    out.set(type, buf.subarray(o + 4, o + len));
    o += align4(len);
  }
  return out;
}

export const readStr = (b: Buffer | undefined): string | undefined => (b ? b.toString('utf8').replace(/\0.*$/s, '') : undefined);
export const readU32 = (b: Buffer | undefined): number | undefined => (b && b.length >= 4 ? b.readUInt32LE(0) : undefined);
export const readU8 = (b: Buffer | undefined): number | undefined => (b && b.length >= 1 ? b.readUInt8(0) : undefined);

export function macToBuffer(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}
