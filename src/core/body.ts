import { VxError } from './errors.js';

/** Reads a request body (HTTP/1 or HTTP/2), refusing with 413 past `limit` bytes. */
export async function readBody(src: AsyncIterable<Buffer>, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of src) {
    size += c.length;
    if (size > limit) throw new VxError(`request body too large (limit ${limit} bytes)`, 413);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}
