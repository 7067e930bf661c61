// A WireGuard interface in userspace: Debian's wireguard-go over /dev/net/tun, started and
// supervised here, configured over its UAPI socket (the text protocol `wg` speaks). This kernel
// has no WireGuard module; where one exists, generic netlink would take this module's place.
//
// wireguard-go puts its socket in /var/run/wireguard/<ifname>.sock, a path every lab host on a
// machine shares: each copy runs in a private mount namespace with that directory bound to its
// daemon's own run directory, so two hosts' interfaces of the same name never meet.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { KernelError, VxError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';

const WG_BIN = '/usr/bin/wireguard-go';
const SOCKET_DIR = '/var/run/wireguard';
const START_TIMEOUT_MS = 5000;
const UAPI_TIMEOUT_MS = 3000;

/** A key pair, each key base64 of 32 bytes as `wg` prints them. */
export interface WgKeyPair {
  privateKey: string;
  publicKey: string;
}

export function isWgKey(k: unknown): k is string {
  return typeof k === 'string' && /^[A-Za-z0-9+/]{43}=$/.test(k) && Buffer.from(k, 'base64').length === 32;
}

/** A fresh X25519 pair, off the event loop. */
export function generateWgKeyPair(): Promise<WgKeyPair> {
  return new Promise((resolve, reject) =>
    crypto.generateKeyPair('x25519', {}, (e, pub, priv) => {
      if (e) return reject(e);
      const raw = (k: crypto.KeyObject, part: 'd' | 'x'): string => Buffer.from(k.export({ format: 'jwk' })[part]!, 'base64url').toString('base64');
      resolve({ privateKey: raw(priv, 'd'), publicKey: raw(pub, 'x') });
    }),
  );
}

/** The public key of a private one. */
export function wgPublicKey(privateKey: string): string {
  // PKCS#8 of an X25519 key: a fixed 16-byte header, then the 32 raw bytes.
  const der = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), Buffer.from(privateKey, 'base64')]);
  const k = crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  return Buffer.from(crypto.createPublicKey(k).export({ format: 'jwk' }).x!, 'base64url').toString('base64');
}

export interface WgPeer {
  publicKey: string;
  /** host:port of its UDP socket */
  endpoint: string;
  /** its tunnel address, as a /32 */
  allowedIp: string;
}

export interface WgPeerState extends WgPeer {
  /** unset: never */
  lastHandshake?: Date;
  rxBytes: number;
  txBytes: number;
}

export interface WgDeviceState {
  publicKey?: string;
  listenPort: number;
  peers: WgPeerState[];
}

const hex = (b64: string): string => Buffer.from(b64, 'base64').toString('hex');
const b64 = (h: string): string => Buffer.from(h, 'hex').toString('base64');

/** A `get=1` answer, parsed. */
export function parseUapiGet(text: string): WgDeviceState & { errno: number } {
  const out: WgDeviceState & { errno: number } = { listenPort: 0, peers: [], errno: -1 };
  let peer: WgPeerState | undefined;
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i < 0) continue;
    const k = line.slice(0, i);
    const v = line.slice(i + 1);
    if (k === 'errno') out.errno = Number(v);
    else if (k === 'private_key') out.publicKey = wgPublicKey(b64(v));
    else if (k === 'listen_port') out.listenPort = Number(v);
    else if (k === 'public_key') out.peers.push((peer = { publicKey: b64(v), endpoint: '', allowedIp: '', rxBytes: 0, txBytes: 0 }));
    else if (!peer) continue;
    else if (k === 'endpoint') peer.endpoint = v;
    else if (k === 'allowed_ip') peer.allowedIp = v;
    else if (k === 'rx_bytes') peer.rxBytes = Number(v);
    else if (k === 'tx_bytes') peer.txBytes = Number(v);
    else if (k === 'last_handshake_time_sec' && Number(v) > 0) peer.lastHandshake = new Date(Number(v) * 1000);
    else if (k === 'last_handshake_time_nsec' && peer.lastHandshake) peer.lastHandshake = new Date(peer.lastHandshake.getTime() + Math.floor(Number(v) / 1e6));
  }
  return out;
}

/**
 * The `set=1` lines that take `have` to `want`: peers gone are removed, new or changed ones set,
 * each with its one allowed address (replace_allowed_ips), unchanged ones left alone so their
 * sessions go on. Empty when nothing differs.
 */
export function uapiPeerChanges(have: WgPeer[], want: WgPeer[]): string {
  const lines: string[] = [];
  const wanted = new Map(want.map((p) => [p.publicKey, p]));
  for (const p of have) if (!wanted.has(p.publicKey)) lines.push(`public_key=${hex(p.publicKey)}`, 'remove=true');
  const had = new Map(have.map((p) => [p.publicKey, p]));
  for (const p of want) {
    const o = had.get(p.publicKey);
    if (o && o.endpoint === p.endpoint && o.allowedIp === p.allowedIp) continue;
    lines.push(`public_key=${hex(p.publicKey)}`, `endpoint=${p.endpoint}`, 'replace_allowed_ips=true', `allowed_ip=${p.allowedIp}`);
  }
  return lines.join('\n');
}

function uapi(socket: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socket);
    let buf = '';
    const t = setTimeout(() => {
      s.destroy();
      reject(new VxError(`wireguard: no answer on ${socket} in ${UAPI_TIMEOUT_MS} ms`, 500));
    }, UAPI_TIMEOUT_MS);
    s.setEncoding('utf8');
    s.on('data', (c: string) => {
      buf += c;
      if (!buf.endsWith('\n\n')) return;
      clearTimeout(t);
      s.end();
      resolve(buf);
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(new VxError(`wireguard: ${socket}: ${errorMessage(e)}`, 500));
    });
    s.write(`${request}\n\n`);
  });
}

async function alive(pid: number): Promise<boolean> {
  try {
    return (await fs.promises.readFile(`/proc/${pid}/comm`, 'utf8')).trim() === 'wireguard-go';
  } catch {
    return false;
  }
}

/**
 * One wireguard-go interface in the calling process's network namespace. A copy a previous run
 * left (the daemon killed -9 keeps its data plane) is adopted when it answers, or replaced.
 */
export class WireguardDevice {
  private constructor(
    readonly ifname: string,
    private readonly dir: string,
    readonly pid: number,
  ) {}

  private get socket(): string {
    return path.join(this.dir, `${this.ifname}.sock`);
  }

  static pidFile(dir: string, ifname: string): string {
    return path.join(dir, `${ifname}.pid`);
  }

  /** The process a previous run recorded, if it is still a wireguard-go. */
  private static async recorded(dir: string, ifname: string): Promise<number | undefined> {
    const pid = Number(await fs.promises.readFile(WireguardDevice.pidFile(dir, ifname), 'utf8').catch(() => '0'));
    return pid && (await alive(pid)) ? pid : undefined;
  }

  private answers(): Promise<boolean> {
    return this.state().then(
      () => true,
      () => false,
    );
  }

  /** Its pid file and socket go (the process has ended or is ending). */
  private static async forget(dir: string, ifname: string): Promise<void> {
    await fs.promises.rm(WireguardDevice.pidFile(dir, ifname), { force: true });
    await fs.promises.rm(path.join(dir, `${ifname}.sock`), { force: true });
  }

  static async open(ifname: string, dir: string, log: Logger): Promise<WireguardDevice> {
    if (!/^[a-z0-9]{1,15}$/.test(ifname)) throw new KernelError('wireguard', ifname, 22, 'EINVAL', 'bad interface name');
    await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
    const old = await WireguardDevice.recorded(dir, ifname);
    if (old) {
      const dev = new WireguardDevice(ifname, dir, old);
      if (await dev.answers()) {
        log.info('adopted the WireGuard interface a previous run left', { ifname, pid: old });
        return dev;
      }
      log.warn('replacing a WireGuard process that does not answer', { ifname, pid: old });
      await WireguardDevice.kill(old);
    }
    await WireguardDevice.forget(dir, ifname);
    await fs.promises.access(WG_BIN).catch(() => {
      throw new VxError(`encrypted overlays need ${WG_BIN} (Debian package wireguard-go)`, 500);
    });
    await fs.promises.mkdir(SOCKET_DIR, { recursive: true });
    const out = await fs.promises.open(path.join(dir, `${ifname}.log`), 'a');
    // Detached: it outlives a daemon killed -9, whose restart adopts it, as the sandboxes are.
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount --bind "$0" ${SOCKET_DIR} && exec ${WG_BIN} -f "$1"`, dir, ifname], {
      detached: true,
      stdio: ['ignore', out.fd, out.fd],
      env: { ...process.env, LOG_LEVEL: 'error' },
    });
    await out.close();
    child.unref();
    const pid = child.pid;
    if (!pid) throw new VxError('wireguard-go could not be started', 500);
    let exited: number | null | undefined;
    child.once('exit', (code) => (exited = code));
    await fs.promises.writeFile(WireguardDevice.pidFile(dir, ifname), String(pid));
    const dev = new WireguardDevice(ifname, dir, pid);
    const until = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (exited !== undefined) throw new VxError(`wireguard-go exited (${exited}) on start; see ${path.join(dir, `${ifname}.log`)}`, 500);
      if (await dev.answers()) return dev;
      if (Date.now() > until) {
        await WireguardDevice.kill(pid);
        throw new VxError(`wireguard-go did not open its socket within ${START_TIMEOUT_MS} ms`, 500);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Ends a copy a previous run left, found by its pid file (a fresh start adopts nothing). */
  static async reap(dir: string, ifname: string, log?: Logger): Promise<void> {
    const old = await WireguardDevice.recorded(dir, ifname);
    if (old) {
      log?.warn('ending the WireGuard process a previous run left', { ifname, pid: old });
      await WireguardDevice.kill(old);
    }
    await WireguardDevice.forget(dir, ifname);
  }

  private static async kill(pid: number): Promise<void> {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    for (let i = 0; i < 100 && (await alive(pid)); i++) await new Promise((r) => setTimeout(r, 20));
    if (await alive(pid)) process.kill(pid, 'SIGKILL');
  }

  async state(): Promise<WgDeviceState> {
    const r = parseUapiGet(await uapi(this.socket, 'get=1'));
    if (r.errno !== 0) throw new VxError(`wireguard: get failed (errno ${r.errno})`, 500);
    return r;
  }

  private async set(lines: string): Promise<void> {
    const r = parseUapiGet(await uapi(this.socket, `set=1\n${lines}`));
    if (r.errno !== 0) throw new VxError(`wireguard: set failed (errno ${r.errno})`, 500);
  }

  /** The interface's own key and port; its peers' sessions restart on a new key (the caller then tells them). */
  async configure(privateKey: string, port: number): Promise<void> {
    // Setting the port rebinds the socket even when it is the same one: only when it differs.
    const st = await this.state();
    const lines = [
      ...(st.publicKey !== wgPublicKey(privateKey) ? [`private_key=${hex(privateKey)}`] : []),
      ...(st.listenPort !== port ? [`listen_port=${port}`] : []),
    ];
    if (lines.length) await this.set(lines.join('\n'));
  }

  /** Makes the peer list exactly `want`, touching only what differs. */
  async setPeers(want: WgPeer[]): Promise<number> {
    const changes = uapiPeerChanges((await this.state()).peers, want);
    if (changes) await this.set(changes);
    return changes ? changes.split('\n').filter((l) => l.startsWith('public_key=')).length : 0;
  }

  /** Ends the process; the interface goes with it. */
  async stop(): Promise<void> {
    await WireguardDevice.kill(this.pid);
    await WireguardDevice.forget(this.dir, this.ifname);
  }
}
