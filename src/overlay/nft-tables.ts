// One nftables table of ours per namespace, kept as wanted: programmed with only what differs,
// adopted as found after a daemon restart, read back and repaired when changed behind our back.
// What the table holds is the codec's business (service VIPs, published ports, ingress marks).
import { KernelError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { Mutex } from '../core/mutex.js';
import { NftSocket, type NftOp } from '../kernel/nftnl.js';
import { nftAsync, nftForgetAsync } from '../kernel/thread.js';

/** the largest change sent as a netlink batch of our own */
const MAX_NETLINK_OPS = 64;

export interface NftCodec<S> {
  /** the table's name (family ip) */
  table: string;
  /** the nft script that turns `have` (undefined: no table) into `want`, one transaction; '' if nothing differs */
  script(have: S | undefined, want: S): string;
  /** what `nft -j list table` shows, or `broken` when its frame is not ours as we made it */
  parse(json: string): { spec: S; broken: boolean };
  same(a: S, b: S): boolean;
  /** the same change as `script` for a table that exists, as ops sent straight over netlink (the hot path) */
  changes?(have: S, want: S): NftOp[];
  /** while adopting after a restart: the goal with what the namespace already held kept */
  merge?(goal: S, held: S): S;
}

export class NftTables<S> {
  /** what each namespace holds, as we last programmed or read it */
  private readonly held = new Map<string, S>();
  /** what each namespace should hold */
  private readonly wanted = new Map<string, S>();
  /** namespaces read and found without our table (not read again for every set) */
  private readonly absent = new Set<string>();
  private readonly locks = new Map<string, Mutex>();
  /** netlink sockets for the changes (codec.changes), one per namespace, kept */
  private readonly sockets = new Map<string, NftSocket>();
  /** tables found changed behind our back and put back */
  repairs = 0;
  reconciles = 0;
  /**
   * After a restart, until then, the goal keeps what each namespace already held (codec.merge):
   * the tables are adopted as they are, not shrunk while gossip refills, and then converge.
   */
  adoptUntil = 0;

  constructor(
    private readonly codec: NftCodec<S>,
    private readonly log: Logger,
  ) {}

  /** Makes namespace `netns` ('' for the node's own) hold `want`; a namespace seen for the first time is read first (adopted). */
  set(netns: string, want: S): Promise<void> {
    this.wanted.set(netns, want);
    return this.lock(netns).lock(async () => {
      const goal = this.wanted.get(netns);
      if (goal === undefined) return;
      if (!this.held.has(netns) && !this.absent.has(netns)) {
        const read = await this.read(netns);
        if (read?.broken) await this.reset(netns);
        else if (read) this.held.set(netns, read.spec);
        else this.absent.add(netns);
      }
      await this.apply(netns, this.adopting(netns, goal));
    });
  }

  private adopting(netns: string, goal: S): S {
    const held = this.held.get(netns);
    if (held === undefined || !this.codec.merge || Date.now() >= this.adoptUntil) return goal;
    return this.codec.merge(goal, held);
  }

  /** The namespace went: nothing to keep for it. */
  forget(netns: string): void {
    this.wanted.delete(netns);
    this.held.delete(netns);
    this.absent.delete(netns);
    this.locks.delete(netns);
    this.sockets.get(netns)?.close();
    this.sockets.delete(netns);
    void nftForgetAsync(netns).catch(() => undefined);
  }

  /** Our table leaves the namespace (which stays). */
  async remove(netns: string): Promise<void> {
    this.wanted.delete(netns);
    await this.lock(netns).lock(async () => {
      if (this.wanted.has(netns)) return;
      await nftAsync(netns, `table ip ${this.codec.table}\ndelete table ip ${this.codec.table}`).catch((e: unknown) => {
        if (!(e instanceof KernelError && e.code === 'ENOENT')) throw e;
      });
      this.held.delete(netns);
      this.absent.add(netns);
    });
  }

  /** What `netns` holds now, as programmed. */
  spec(netns: string): S | undefined {
    return this.held.get(netns);
  }

  namespaces(): string[] {
    return [...this.wanted.keys()];
  }

  /** Reads every namespace back and repairs what differs from what we programmed. */
  async reconcile(): Promise<void> {
    this.reconciles++;
    for (const netns of [...this.wanted.keys()]) {
      await this.lock(netns)
        .lock(async () => {
          const goal = this.wanted.get(netns);
          if (goal === undefined) return;
          const read = await this.read(netns);
          const held = this.held.get(netns);
          if (read && !read.broken && held !== undefined && this.codec.same(read.spec, held)) return;
          // No table, and none wanted (nothing to program): nothing changed.
          if (!read && held === undefined && !this.codec.script(undefined, goal)) return;
          this.repairs++;
          this.log.warn('nftables table changed behind our back: repairing', {
            netns,
            table: this.codec.table,
            found: read ? (read.broken ? 'broken' : 'changed') : 'gone',
          });
          if (read?.broken) await this.reset(netns);
          else if (read) this.held.set(netns, read.spec);
          else this.held.delete(netns);
          await this.apply(netns, this.adopting(netns, goal));
        })
        .catch((e: unknown) => this.log.warn('nftables reconcile failed', { netns, table: this.codec.table, error: errorMessage(e) }));
    }
  }

  private lock(netns: string): Mutex {
    let m = this.locks.get(netns);
    if (!m) this.locks.set(netns, (m = new Mutex()));
    return m;
  }

  private async apply(netns: string, goal: S): Promise<void> {
    const have = this.held.get(netns);
    // A big change goes through libnftables: its cache refetch is small beside it, and a batch of
    // thousands of messages (and their ACKs) would not fit the socket's buffers.
    const changes = have !== undefined && this.codec.changes ? this.codec.changes(have, goal) : undefined;
    const ops = changes && changes.length <= MAX_NETLINK_OPS ? changes : undefined;
    const script = ops ? '' : this.codec.script(have, goal);
    if (ops ? ops.length === 0 : !script) return;
    try {
      if (ops) await this.socket(netns).commit(ops);
      else await nftAsync(netns, script);
      this.held.set(netns, goal);
      this.absent.delete(netns);
    } catch (e) {
      // What the kernel holds is unknown now: read it again next time.
      this.held.delete(netns);
      this.absent.delete(netns);
      throw e;
    }
  }

  private socket(netns: string): NftSocket {
    let s = this.sockets.get(netns);
    if (!s) this.sockets.set(netns, (s = NftSocket.open(netns)));
    return s;
  }

  /** The table as the kernel holds it, or undefined when there is none (or the namespace is gone). */
  private async read(netns: string): Promise<{ spec: S; broken: boolean } | undefined> {
    try {
      return this.codec.parse(await nftAsync(netns, `list table ip ${this.codec.table}`, true));
    } catch (e) {
      if (e instanceof KernelError && e.code === 'ENOENT') return undefined;
      throw e;
    }
  }

  private async reset(netns: string): Promise<void> {
    await nftAsync(netns, `delete table ip ${this.codec.table}`);
    this.held.delete(netns);
    this.absent.add(netns);
  }
}
