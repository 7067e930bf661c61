import { VxError } from './errors.js';

/**
 * Reads a request body (HTTP/1 or HTTP/2), refusing with 413 past `limit` bytes and, with
 * `deadlineMs`, with 408 when the whole body has not arrived by then (a client trickling a byte a
 * second would otherwise hold its connection for minutes).
 */
export async function readBody(src: AsyncIterable<Buffer>, limit: number, deadlineMs?: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    if (deadlineMs !== undefined)
      timer = setTimeout(() => reject(new VxError(`request body not received within ${Math.round(deadlineMs / 1000)} s`, 408)), deadlineMs);
  });
  late.catch(() => undefined);
  const it = src[Symbol.asyncIterator]();
  try {
    for (;;) {
      const r = await Promise.race([it.next(), late]);
      if (r.done) break;
      size += r.value.length;
      if (size > limit) throw new VxError(`request body too large (limit ${limit} bytes)`, 413);
      chunks.push(r.value);
    }
  } catch (e) {
    await it.return?.();
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(chunks);
}
