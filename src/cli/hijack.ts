// The client side of docker's hijacked exec stream: an HTTP/1.1 upgrade on the unix socket,
// then raw bytes (TTY) or stdcopy frames (no TTY) until the daemon closes the stream.
import net from 'node:net';
import { VxError } from '../core/errors.js';
import { API_VERSION } from '../core/version.js';

export interface HijackIo {
  stdin?: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** Demultiplexes stdcopy frames; keeps partial frames across chunks. */
export class StdcopyReader {
  private buf = Buffer.alloc(0);
  constructor(private readonly io: HijackIo) {}
  push(c: Buffer): void {
    this.buf = Buffer.concat([this.buf, c]);
    while (this.buf.length >= 8) {
      const len = this.buf.readUInt32BE(4);
      if (this.buf.length < 8 + len) break;
      const payload = this.buf.subarray(8, 8 + len);
      (this.buf[0] === 2 ? this.io.stderr : this.io.stdout).write(payload);
      this.buf = this.buf.subarray(8 + len);
    }
  }
}

export function hijack(socketPath: string, path: string, body: unknown, tty: boolean, io: HijackIo): Promise<void> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let head = Buffer.alloc(0);
    let upgraded = false;
    const demux = new StdcopyReader(io);
    sock.on('connect', () => {
      sock.write(
        `POST /v${API_VERSION}${path} HTTP/1.1\r\nHost: vxswarm\r\nUser-Agent: vxswarm-cli\r\nContent-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`,
      );
    });
    sock.on('data', (c: Buffer) => {
      if (upgraded) {
        if (tty) io.stdout.write(c);
        else demux.push(c);
        return;
      }
      head = Buffer.concat([head, c]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head.subarray(0, end).toString())?.[1] ?? 0);
      const rest = head.subarray(end + 4);
      if (status !== 101) {
        const m = /"message":"((?:[^"\\]|\\.)*)"/.exec(rest.toString());
        sock.destroy();
        reject(new VxError(`Error response from daemon: ${m ? JSON.parse(`"${m[1]}"`) : `status ${status}`}`, status || 500));
        return;
      }
      upgraded = true;
      if (rest.length) {
        if (tty) io.stdout.write(rest);
        else demux.push(rest);
      }
      if (io.stdin) {
        io.stdin.on('data', (d: Buffer) => sock.write(d));
        io.stdin.on('end', () => sock.end());
      }
    });
    sock.on('error', reject);
    sock.on('close', () => resolve());
  });
}
