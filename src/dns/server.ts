// The main thread's handle on the embedded resolver: one worker thread serves every container.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { VxError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { DnsRecord } from './records.js';

export class EmbeddedDns {
  private readonly worker: Worker;
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(private readonly log: Logger) {
    const here = fileURLToPath(import.meta.url);
    const ts = here.endsWith('.ts');
    // Under tsx (tests), the worker needs the loader too.
    this.worker = new Worker(path.join(path.dirname(here), ts ? 'worker.ts' : 'worker.js'), ts ? { execArgv: ['--import', 'tsx'] } : {});
    this.worker.unref();
    this.worker.on('message', (m: { seq: number; ok: boolean; result?: unknown; error?: string }) => {
      const w = this.waiting.get(m.seq);
      if (!w) return;
      this.waiting.delete(m.seq);
      if (m.ok) w.resolve(m.result);
      else w.reject(new VxError(`embedded DNS: ${m.error}`, 500));
    });
    this.worker.on('error', (e) => this.log.error('embedded DNS worker failed', { error: e.message }));
  }

  private call(msg: Record<string, unknown>): Promise<unknown> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(seq, { resolve, reject });
      this.worker.postMessage({ ...msg, seq });
    });
  }

  /** Serves 127.0.0.11:53 inside `netns` for a container on `networks`. */
  add(netns: string, networks: string[]): Promise<void> {
    return this.call({ op: 'add', netns, networks }) as Promise<void>;
  }
  remove(netns: string): Promise<void> {
    return this.call({ op: 'remove', netns }) as Promise<void>;
  }
  setRecords(records: DnsRecord[]): Promise<void> {
    return this.call({ op: 'records', records }) as Promise<void>;
  }
  stats(): Promise<Record<string, number>> {
    return this.call({ op: 'stats' }) as Promise<Record<string, number>>;
  }
  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
