// The kernel thread's side (see thread.ts): one request at a time, answered in order.
import { parentPort } from 'node:worker_threads';
import { KernelError, errorMessage } from '../core/errors.js';
import { mountOverlay } from './mounts.js';
import { createNetns } from './netns.js';
import { nftForget, nftRun } from './nft.js';

type Msg = { seq: number } & (
  | { op: 'createNetns'; name: string }
  | { op: 'mountOverlay'; target: string; lowers: string[]; upper: string; work: string }
  | { op: 'nft'; netns: string; script: string; json: boolean }
  | { op: 'nftForget'; netns: string }
);

parentPort!.on('message', (m: Msg) => {
  try {
    if (m.op === 'nft') {
      parentPort!.postMessage({ seq: m.seq, out: nftRun(m.netns, m.script, m.json) });
      return;
    }
    if (m.op === 'nftForget') nftForget(m.netns);
    else if (m.op === 'createNetns') createNetns(m.name);
    else if (m.op === 'mountOverlay') mountOverlay(m.target, m.lowers, m.upper, m.work);
    parentPort!.postMessage({ seq: m.seq });
  } catch (e) {
    const k = e instanceof KernelError ? e : undefined;
    parentPort!.postMessage({
      seq: m.seq,
      error: { op: k?.op ?? m.op, object: k?.object ?? '', errno: k?.errno ?? 5, code: k?.code ?? 'EIO', message: k ? (k.detail ?? '') : errorMessage(e) },
    });
  }
});
