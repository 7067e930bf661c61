// nftables through Debian's libnftables (in-process: ~100x faster than spawning `nft`, and `nft -f -`
// fails on a Node pipe). Each script is one kernel transaction: all of it or nothing. Called on the
// kernel thread (thread.ts), never on the event loop.
import koffi from 'koffi';
import { KernelError } from '../core/errors.js';
import fs from 'node:fs';
import { enterNetnsThread, netnsPath } from './netns.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- koffi's functions take what the C signature says
type CFn = (...args: any[]) => unknown;
let lib: Record<'newCtx' | 'free' | 'run' | 'bufOut' | 'bufErr' | 'out' | 'err' | 'flags', CFn> | undefined;

const NFT_CTX_DEFAULT = 0;
const NFT_CTX_OUTPUT_JSON = 1 << 4;

function load(): NonNullable<typeof lib> {
  if (lib) return lib;
  const so = koffi.load('libnftables.so.1');
  lib = {
    newCtx: so.func('void *nft_ctx_new(uint32_t flags)'),
    free: so.func('void nft_ctx_free(void *ctx)'),
    run: so.func('int nft_run_cmd_from_buffer(void *ctx, const char *buf)'),
    bufOut: so.func('int nft_ctx_buffer_output(void *ctx)'),
    bufErr: so.func('int nft_ctx_buffer_error(void *ctx)'),
    out: so.func('const char *nft_ctx_get_output_buffer(void *ctx)'),
    err: so.func('const char *nft_ctx_get_error_buffer(void *ctx)'),
    flags: so.func('void nft_ctx_output_set_flags(void *ctx, uint32_t flags)'),
  };
  return lib;
}

/**
 * One context per namespace, kept: libnftables keeps its copy of the ruleset in it and refetches
 * only when the kernel's generation moved, so a small change to a big table does not pay for
 * listing all of it again. Its netlink socket is made inside the namespace and stays bound there.
 */
const contexts = new Map<string, { ctx: unknown; inode: number }>();

/** The namespace's identity: a name deleted and made again is another namespace. */
function inodeOf(netns: string): number {
  try {
    return fs.statSync(netns ? netnsPath(netns) : '/proc/thread-self/ns/net').ino;
  } catch {
    throw new KernelError('nft', netns, 2, 'ENOENT', 'no such network namespace');
  }
}

function contextFor(netns: string): unknown {
  const inode = inodeOf(netns);
  const had = contexts.get(netns);
  if (had && had.inode === inode) return had.ctx;
  if (had) nftForget(netns);
  const l = load();
  let ctx: unknown;
  const leave = netns ? enterNetnsThread(netns) : (): void => undefined;
  try {
    ctx = l.newCtx(NFT_CTX_DEFAULT) as unknown;
  } finally {
    leave();
  }
  if (!ctx) throw new KernelError('nft', netns, 12, 'ENOMEM', 'nft_ctx_new failed');
  l.bufOut(ctx);
  l.bufErr(ctx);
  contexts.set(netns, { ctx, inode });
  return ctx;
}

/** The namespace is gone: its context goes too. */
export function nftForget(netns: string): void {
  const had = contexts.get(netns);
  if (!had) return;
  contexts.delete(netns);
  load().free(had.ctx);
}

/** Runs an nft script inside namespace `netns` ('' for the daemon's own); returns what it printed (JSON when `json`). */
export function nftRun(netns: string, script: string, json = false): string {
  const l = load();
  const ctx = contextFor(netns);
  l.flags(ctx, json ? NFT_CTX_OUTPUT_JSON : 0);
  const rc = l.run(ctx, script) as number;
  if (rc !== 0) {
    const msg = String((l.err(ctx) as string | null) ?? '').trim();
    // "No such file or directory" is what nft says of a table or chain that is not there.
    const missing = /No such file or directory/.test(msg);
    throw new KernelError('nft', netns, missing ? 2 : 22, missing ? 'ENOENT' : 'EINVAL', msg.split('\n')[0] ?? 'nft failed');
  }
  return String((l.out(ctx) as string | null) ?? '');
}
