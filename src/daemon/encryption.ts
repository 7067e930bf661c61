// The node's side of encrypted overlays: its WireGuard key pair (made here, kept on disk, only
// the public key goes to the managers), its tunnel address (from its node record), and the peer
// list its manager sends with the assignments, handed to the overlay's tunnel.
import fs from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { TunnelAssignment } from '../cluster/manager/dispatcher.js';
import type { NodeRecord } from '../cluster/manager/types.js';
import { generateWgKeyPair, wgPublicKey } from '../kernel/wireguard.js';
import type { OverlayHost } from '../overlay/host.js';

interface KeyFile {
  privateKey: string;
  /** the tunnel address the managers gave, kept so a restart can restore encrypted networks before its session */
  tunnelIp?: string;
}

export class NodeEncryption {
  private file: KeyFile | undefined;
  private making: Promise<KeyFile> | undefined;

  constructor(
    private readonly dir: string,
    private readonly overlay: () => OverlayHost | undefined,
    private readonly send: (msg: Record<string, unknown>) => void,
    private readonly log: Logger,
  ) {}

  private get path(): string {
    return path.join(this.dir, 'wireguard.json');
  }

  private async load(): Promise<KeyFile> {
    if (this.file) return this.file;
    this.making ??= (async () => {
      try {
        return JSON.parse(await fs.promises.readFile(this.path, 'utf8')) as KeyFile;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        const k = await generateWgKeyPair();
        const f = { privateKey: k.privateKey };
        await this.save(f);
        return f;
      }
    })().finally(() => (this.making = undefined));
    this.file = await this.making;
    return this.file;
  }

  private async save(f: KeyFile): Promise<void> {
    await fs.promises.mkdir(this.dir, { recursive: true });
    const tmp = `${this.path}.tmp`;
    await fs.promises.writeFile(tmp, JSON.stringify(f), { mode: 0o600 });
    await fs.promises.rename(tmp, this.path);
    this.file = f;
  }

  /** At start, before any session: a restored encrypted network needs its tunnel's address and key. */
  async restore(): Promise<void> {
    // Only a node that has a key file restores (load() would make one).
    const f = await fs.promises.access(this.path).then(
      () => this.load(),
      () => undefined,
    );
    if (f?.tunnelIp) await this.overlay()?.setTunnelIdentity({ ip: f.tunnelIp, privateKey: f.privateKey });
  }

  /** A session's welcome: the managers learn our public key if the record lacks it; the address comes from it. */
  async welcome(node: NodeRecord | undefined): Promise<void> {
    if (!node) return;
    const f = await this.load();
    const pub = wgPublicKey(f.privateKey);
    if (node.wgPublicKey !== pub) this.send({ type: 'wireguard', publicKey: pub });
    if (node.tunnelIp) await this.setAddress(node.tunnelIp);
  }

  private async setAddress(ip: string): Promise<void> {
    const f = await this.load();
    if (f.tunnelIp !== ip) await this.save({ ...f, tunnelIp: ip });
    await this.overlay()?.setTunnelIdentity({ ip, privateKey: f.privateKey });
  }

  /** The manager's tunnel part of an assignment set. */
  async assign(t: TunnelAssignment | undefined): Promise<void> {
    if (!t) return;
    try {
      await this.setAddress(t.ip);
      await this.overlay()?.setTunnelPeers(t.peers);
    } catch (e) {
      this.log.error('could not set the WireGuard peers', { error: errorMessage(e) });
    }
  }

  /**
   * A new key pair. The interface takes it first, then the managers hear of it: peers keep
   * sending on their current session (we still receive on it) and hold what they send next
   * until the handshake on the new key, so a rotation loses no packet.
   */
  async rotate(): Promise<string> {
    const f = await this.load();
    const k = await generateWgKeyPair();
    await this.save({ ...f, privateKey: k.privateKey });
    if (f.tunnelIp) await this.overlay()?.setTunnelIdentity({ ip: f.tunnelIp, privateKey: k.privateKey });
    this.send({ type: 'wireguard', publicKey: k.publicKey });
    this.log.info('WireGuard key rotated', { publicKey: k.publicKey });
    return k.publicKey;
  }
}
