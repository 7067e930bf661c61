// The main thread's handle on the embedded resolver: one worker thread serves every container.
import type { Worker } from 'node:worker_threads';
import { VxError } from '../core/errors.js';
import { spawnSibling } from '../core/worker.js';
import type { Logger } from '../core/log.js';
import type { DnsRecord } from './records.js';

export class EmbeddedDns {
  private worker: Worker | undefined;
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  /** what the worker serves, replayed into a new worker if one dies */
  private readonly sandboxes = new Map<string, string[]>();
  private records: DnsRecord[] = [];
  private overlays: string[] = [];

  constructor(private readonly log: Logger) {}

  private spawn(): Worker {
    const w = spawnSibling(import.meta.url, 'worker');
    w.on('message', (m: { seq: number; ok: boolean; result?: unknown; error?: string }) => {
      const p = this.waiting.get(m.seq);
      if (!p) return;
      this.waiting.delete(m.seq);
      if (m.ok) p.resolve(m.result);
      else p.reject(new VxError(`embedded DNS: ${m.error}`, 500));
    });
    const died = (why: string): void => {
      if (this.worker !== w) return;
      this.worker = undefined;
      this.log.error('embedded DNS worker stopped', { error: why });
      for (const p of this.waiting.values()) p.reject(new VxError(`embedded DNS worker stopped: ${why}`, 500));
      this.waiting.clear();
    };
    w.on('error', (e) => died(e.message));
    w.on('exit', (code) => died(`exit ${code}`));
    w.unref();
    return w;
  }

  /** The worker, started (again) with everything it served. */
  private live(): Worker {
    if (this.worker) return this.worker;
    const w = this.spawn();
    this.worker = w;
    this.post(w, { op: 'records', records: this.records, overlays: this.overlays }).catch(() => undefined);
    for (const [netns, networks] of this.sandboxes) this.post(w, { op: 'add', netns, networks }).catch(() => undefined);
    return w;
  }

  private post(w: Worker, msg: Record<string, unknown>): Promise<unknown> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(seq, { resolve, reject });
      w.postMessage({ ...msg, seq });
    });
  }

  private call(msg: Record<string, unknown>): Promise<unknown> {
    return this.post(this.live(), msg);
  }

  /** Serves 127.0.0.11:53 inside `netns` for a container on `networks`. */
  async add(netns: string, networks: string[]): Promise<void> {
    this.sandboxes.set(netns, networks);
    try {
      await this.call({ op: 'add', netns, networks });
    } catch (e) {
      this.sandboxes.delete(netns);
      throw e;
    }
  }
  async remove(netns: string): Promise<void> {
    this.sandboxes.delete(netns);
    if (this.worker) await this.call({ op: 'remove', netns });
  }
  /** The endpoint table, and the subnets of the overlays it comes from (for PTR answers). */
  async setRecords(records: DnsRecord[], overlays: string[]): Promise<void> {
    this.records = records;
    this.overlays = overlays;
    await this.call({ op: 'records', records, overlays });
  }
  stats(): Promise<Record<string, number>> {
    return this.call({ op: 'stats' }) as Promise<Record<string, number>>;
  }
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    await w?.terminate();
  }
}
