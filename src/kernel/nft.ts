// nftables through Debian's libnftables (in-process: ~100x faster than spawning `nft`, and `nft -f -`
// fails on a Node pipe). A libnftables context talks to the netns of the thread that uses it, so
// each call steps into the namespace, runs one script (one kernel transaction: all of it or
// nothing), and steps back. Called on the kernel thread (thread.ts), never on the event loop.
import koffi from 'koffi';
import { KernelError } from '../core/errors.js';
import { enterNetnsThread } from './netns.js';

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

/** Runs an nft script inside namespace `netns` ('' for the daemon's own); returns what it printed (JSON when `json`). */
export function nftRun(netns: string, script: string, json = false): string {
  const l = load();
  const leave = netns ? enterNetnsThread(netns) : (): void => undefined;
  try {
    const ctx = l.newCtx(NFT_CTX_DEFAULT) as unknown;
    if (!ctx) throw new KernelError('nft', netns, 12, 'ENOMEM', 'nft_ctx_new failed');
    try {
      l.bufOut(ctx);
      l.bufErr(ctx);
      if (json) l.flags(ctx, NFT_CTX_OUTPUT_JSON);
      const rc = l.run(ctx, script) as number;
      if (rc !== 0) {
        const msg = String((l.err(ctx) as string | null) ?? '').trim();
        // "No such file or directory" is what nft says of a table or chain that is not there.
        const missing = /No such file or directory/.test(msg);
        throw new KernelError('nft', netns, missing ? 2 : 22, missing ? 'ENOENT' : 'EINVAL', msg.split('\n')[0] ?? 'nft failed');
      }
      return String((l.out(ctx) as string | null) ?? '');
    } finally {
      l.free(ctx);
    }
  } finally {
    leave();
  }
}
