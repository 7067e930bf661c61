// docker exec: exec instances (create → start → inspect), the hijacked stream, and resizes.
// With a TTY the stream is raw both ways; without one, output is multiplexed ("stdcopy" frames:
// stream byte, three zero bytes, big-endian length) and stdin stays raw.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Duplex, Writable } from 'node:stream';
import { ConflictError, NotFoundError } from '../core/errors.js';
import type { ContainerRuntime } from '../runtime/containers.js';

export interface ExecRecord {
  id: string;
  containerId: string;
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  env: string[];
  workingDir: string;
  user: string;
  rows: number;
  cols: number;
  running: boolean;
  started: boolean;
  exitCode: number | null;
  pid: number;
  child?: ChildProcess;
}

/** An 8-byte stdcopy header and the payload. */
export function frame(stream: 1 | 2, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h[0] = stream;
  h.writeUInt32BE(payload.length, 4);
  return Buffer.concat([h, payload]);
}

const MAX_EXECS = 1000;

export class Execs {
  private readonly map = new Map<string, ExecRecord>();
  constructor(private readonly runtime: ContainerRuntime) {}

  create(containerId: string, o: Omit<ExecRecord, 'id' | 'containerId' | 'running' | 'started' | 'exitCode' | 'pid'>): ExecRecord {
    // Finished execs are kept for inspection; the oldest go first.
    if (this.map.size >= MAX_EXECS) {
      for (const [k, v] of this.map) {
        if (!v.running) this.map.delete(k);
        if (this.map.size < MAX_EXECS) break;
      }
    }
    const rec: ExecRecord = { ...o, id: randomBytes(32).toString('hex'), containerId, running: false, started: false, exitCode: null, pid: 0 };
    this.map.set(rec.id, rec);
    return rec;
  }

  get(id: string): ExecRecord {
    const e = this.map.get(id);
    if (!e) throw new NotFoundError(`No such exec instance: ${id}`);
    return e;
  }

  ofContainer(containerId: string): string[] {
    return [...this.map.values()].filter((e) => e.containerId === containerId && e.running).map((e) => e.id);
  }

  /** Runs the exec; output goes to `out` (framed unless TTY); resolves with the exit code. */
  run(e: ExecRecord, out: Writable | undefined, input: Duplex | undefined, tty: boolean): Promise<number> {
    if (e.started) throw new ConflictError(`exec ${e.id} has already been started`);
    e.started = true;
    const child = this.runtime.exec(e.containerId, { cmd: e.cmd, env: e.env, workingDir: e.workingDir, user: e.user, tty, rows: e.rows, cols: e.cols });
    e.child = child;
    e.running = true;
    e.pid = child.pid ?? 0;
    const write = (stream: 1 | 2) => (c: Buffer) => {
      if (!out || out.destroyed) return;
      out.write(tty ? c : frame(stream, c));
    };
    if (e.stdout || tty) child.stdout?.on('data', write(1));
    else child.stdout?.resume();
    if (e.stderr && !tty) child.stderr?.on('data', write(2));
    else child.stderr?.resume();
    if (input && e.stdin) {
      input.on('data', (c: Buffer) => child.stdin?.write(c));
      input.on('end', () => child.stdin?.end());
      // Reading the start request's body may have paused the socket; a 'data' listener alone
      // does not resume an explicitly paused stream.
      input.resume();
    } else child.stdin?.end();
    return new Promise((resolve) => {
      child.on('error', () => undefined);
      child.on('close', (code, signal) => {
        e.running = false;
        e.exitCode = code ?? (signal ? 128 + 9 : 126);
        e.child = undefined;
        resolve(e.exitCode);
      });
    });
  }

  resize(id: string, h: number, w: number): void {
    const e = this.get(id);
    e.rows = h;
    e.cols = w;
    const ctl = e.child?.stdio[3] as Writable | undefined;
    if (e.running && e.tty && ctl && !ctl.destroyed) ctl.write(`${h} ${w}\n`);
  }
}
