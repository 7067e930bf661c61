// Starts container shims through `vxshim spawner`, a small process that forks for us: a fork of
// the daemon itself copies its page tables (~5 ms at 100 MB of RSS, on the event loop that runs
// gossip probes and heartbeats), a fork of the spawner costs microseconds.
import { spawn, type ChildProcess } from 'node:child_process';
import { VxError } from '../core/errors.js';

export class Spawner {
  private child: ChildProcess | undefined;
  private buf = '';
  private seq = 0;
  private readonly waiting = new Map<string, (line: string) => void>();

  constructor(private readonly shim: () => string) {}

  private live(): ChildProcess {
    if (this.child && this.child.exitCode === null && !this.child.killed) return this.child;
    const c = spawn(this.shim(), ['spawner'], { stdio: ['pipe', 'pipe', 'ignore'] });
    c.unref();
    (c.stdin as unknown as { unref?: () => void }).unref?.();
    (c.stdout as unknown as { unref?: () => void }).unref?.();
    c.stdout!.setEncoding('utf8');
    c.stdout!.on('data', (d: string) => {
      this.buf += d;
      for (let i = this.buf.indexOf('\n'); i >= 0; i = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const sp = line.indexOf(' ');
        const done = this.waiting.get(line.slice(0, sp));
        this.waiting.delete(line.slice(0, sp));
        done?.(line.slice(sp + 1));
      }
    });
    const gone = (): void => {
      if (this.child !== c) return;
      this.child = undefined;
      this.buf = '';
      for (const done of this.waiting.values()) done('failed 125 the spawner exited');
      this.waiting.clear();
    };
    c.on('exit', gone);
    c.on('error', gone);
    c.stdin!.on('error', () => undefined);
    this.child = c;
    return c;
  }

  /** Runs `path args...` detached, fd 3 a pipe; resolves with the first line it writes there. */
  run(path: string, args: string[]): Promise<string> {
    for (const a of [path, ...args]) if (/[\t\n]/.test(a)) return Promise.reject(new VxError(`cannot start ${path}: an argument holds a tab or newline`, 500));
    const tag = `s${++this.seq}`;
    return new Promise((resolve) => {
      this.waiting.set(tag, resolve);
      this.live().stdin!.write(`${tag}\t${[path, ...args].join('\t')}\n`);
    });
  }

  close(): void {
    this.child?.stdin?.end();
    this.child = undefined;
  }
}
