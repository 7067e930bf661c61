// Slow syscalls off the event loop. Creating a network namespace (unshare) and mounting an
// overlay take milliseconds to tens of milliseconds each when many namespaces exist; on the main
// thread twenty task starts would stall gossip probes and heartbeats for that long. This thread
// does them instead: a namespace is made in the thread's own netns and it steps back home, as the
// main thread would. Mounts are process-wide, so it does not matter which thread makes them.
import type { Worker } from 'node:worker_threads';
import { KernelError } from '../core/errors.js';
import { spawnSibling } from '../core/worker.js';

type Op =
  | { op: 'createNetns'; name: string }
  | { op: 'mountOverlay'; target: string; lowers: string[]; upper: string; work: string }
  | { op: 'nft'; netns: string; script: string; json: boolean }
  | { op: 'nftForget'; netns: string };
interface Reply {
  seq: number;
  out?: string;
  error?: { op: string; object: string; errno: number; code: string; message: string };
}

let worker: Worker | undefined;
let idleTimer: NodeJS.Timeout | undefined;
/** an idle thread is let go: it holds a V8 isolate (~8 MB) a quiet node does not need */
const IDLE_MS = 2000;
let seq = 0;
/** namespaces whose nftables contexts live on the thread (their copies of the rulesets): it is kept while any does */
const pinned = new Set<string>();
const waiting = new Map<number, { resolve: (out: string) => void; reject: (e: Error) => void }>();

function live(): Worker {
  if (worker) return worker;
  const w = spawnSibling(import.meta.url, 'thread-main');
  w.on('message', (m: Reply) => {
    const p = waiting.get(m.seq);
    if (!p) return;
    waiting.delete(m.seq);
    if (waiting.size === 0) {
      w.unref();
      idleTimer = setTimeout(() => {
        if (worker === w && waiting.size === 0 && pinned.size === 0) {
          worker = undefined;
          void w.terminate();
        }
      }, IDLE_MS);
      idleTimer.unref();
    }
    if (m.error) p.reject(new KernelError(m.error.op, m.error.object, m.error.errno, m.error.code, m.error.message));
    else p.resolve(m.out ?? '');
  });
  const died = (why: string): void => {
    if (worker !== w) return;
    worker = undefined;
    for (const p of waiting.values()) p.reject(new KernelError('kernel thread', why, 5, 'EIO'));
    waiting.clear();
  };
  w.on('error', (e) => died(e.message));
  w.on('exit', (code) => died(`exit ${code}`));
  // idle, it must not keep a process alive (a test, a CLI) that has nothing else to do
  w.unref();
  worker = w;
  return w;
}

function call(op: Op): Promise<string> {
  const n = ++seq;
  clearTimeout(idleTimer);
  return new Promise((resolve, reject) => {
    const w = live();
    // held while a request is out, so a process waiting for it stays up
    if (waiting.size === 0) w.ref();
    waiting.set(n, { resolve, reject });
    w.postMessage({ seq: n, ...op });
  });
}

/** createNetns, on the kernel thread. */
export async function createNetnsAsync(name: string): Promise<void> {
  await call({ op: 'createNetns', name });
}

/** mountOverlay, on the kernel thread. */
export async function mountOverlayAsync(target: string, lowers: string[], upper: string, work: string): Promise<void> {
  await call({ op: 'mountOverlay', target, lowers, upper, work });
}

/** An nft script run inside namespace `netns`, on the kernel thread; what it printed. */
export function nftAsync(netns: string, script: string, json = false): Promise<string> {
  pinned.add(netns);
  return call({ op: 'nft', netns, script, json });
}

/** Frees the nftables context of a namespace that is gone (or not used again soon). */
export async function nftForgetAsync(netns: string): Promise<void> {
  if (!pinned.delete(netns) || !worker) return;
  await call({ op: 'nftForget', netns });
}
