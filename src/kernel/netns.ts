// Named network namespaces, bind-mounted under /run/netns like `ip netns add`, so
// iproute2 sees them and they outlive the process that made them.
import fs from 'node:fs';
import path from 'node:path';
import { KernelError } from '../core/errors.js';
import { CLONE_NEWNET, MNT_DETACH, MS_BIND, MS_REC, MS_SHARED, SyscallError, gettid, mount, setns, umount2, unshare } from './libc.js';

export const NETNS_DIR = '/run/netns';

/** The namespace our main thread lives in; every switch returns here. */
let homeFd: number | undefined;
function home(): number {
  homeFd ??= fs.openSync('/proc/thread-self/ns/net', 'r');
  return homeFd;
}

let dirReady = false;
/** Make /run/netns a shared mount point, as iproute2 does, so mounts propagate to other mount namespaces. */
function ensureNetnsDir(): void {
  if (dirReady) return;
  fs.mkdirSync(NETNS_DIR, { recursive: true, mode: 0o755 });
  try {
    mount('', NETNS_DIR, 'none', MS_SHARED | MS_REC);
  } catch (e) {
    if (!(e instanceof SyscallError) || e.code !== 'EINVAL') throw e;
    mount(NETNS_DIR, NETNS_DIR, 'none', MS_BIND | MS_REC);
    mount('', NETNS_DIR, 'none', MS_SHARED | MS_REC);
  }
  dirReady = true;
}

export function netnsPath(name: string): string {
  if (!/^[A-Za-z0-9_.-]{1,200}$/.test(name) || name === '.' || name === '..') {
    throw new KernelError('netns', name, 22, 'EINVAL', 'namespace names are letters, digits, "_", "-" and "."');
  }
  return path.join(NETNS_DIR, name);
}

function isNetnsMount(p: string): boolean {
  // A bound netns file reports the nsfs device; an empty placeholder file is a regular tmpfs file.
  try {
    return fs.statSync(p).dev !== fs.statSync(NETNS_DIR).dev;
  } catch {
    return false;
  }
}

export function netnsExists(name: string): boolean {
  return isNetnsMount(netnsPath(name));
}

/** Creates a named namespace. Fails with EEXIST if one of that name is already mounted. */
export function createNetns(name: string): void {
  const p = netnsPath(name);
  ensureNetnsDir();
  if (isNetnsMount(p)) throw new KernelError('create netns', name, 17, 'EEXIST');
  fs.writeFileSync(p, '', { mode: 0o444 });
  const back = home();
  try {
    unshare(CLONE_NEWNET);
    try {
      mount(`/proc/self/task/${gettid()}/ns/net`, p, 'none', MS_BIND);
    } finally {
      setns(back, CLONE_NEWNET);
    }
  } catch (e) {
    fs.rmSync(p, { force: true });
    throw asKernelError('create netns', name, e);
  }
}

/** Unmounts and removes a named namespace; a missing one is not an error. */
export function deleteNetns(name: string): void {
  const p = netnsPath(name);
  try {
    umount2(p, MNT_DETACH);
  } catch (e) {
    if (!(e instanceof SyscallError) || (e.code !== 'EINVAL' && e.code !== 'ENOENT')) throw asKernelError('delete netns', name, e);
  }
  fs.rmSync(p, { force: true });
}

export function listNetns(prefix = ''): string[] {
  try {
    return fs
      .readdirSync(NETNS_DIR)
      .filter((n) => n.startsWith(prefix))
      .sort();
  } catch {
    return [];
  }
}

/** Opens a namespace file; the caller closes the fd. */
export function openNetns(name: string): number {
  try {
    return fs.openSync(netnsPath(name), 'r');
  } catch (e) {
    throw new KernelError('open netns', name, 2, (e as NodeJS.ErrnoException).code ?? 'ENOENT');
  }
}

/**
 * Runs `fn` synchronously with the main thread inside namespace `name` (or the home
 * namespace when undefined). Sockets made inside stay bound to that namespace.
 */
export function inNetns<T>(name: string | undefined, fn: () => T): T {
  if (name === undefined) return fn();
  const leave = enterNetnsThread(name);
  try {
    return fn();
  } finally {
    leave();
  }
}

/**
 * Moves the calling thread into namespace `name` until the returned function is called. Only for a
 * thread that makes nothing but the sockets meant for that namespace in between (the DNS worker).
 */
export function enterNetnsThread(name: string): () => void {
  // Resolve home before leaving it: evaluated lazily inside the target, "home" would be the target.
  const back = home();
  const fd = openNetns(name);
  try {
    setns(fd, CLONE_NEWNET);
  } catch (e) {
    fs.closeSync(fd);
    throw asKernelError('enter netns', name, e);
  }
  return () => {
    setns(back, CLONE_NEWNET);
    fs.closeSync(fd);
  };
}

/** Writes a sysctl under /proc/sys as seen from namespace `ns`. */
export function writeSysctl(ns: string | undefined, key: string, value: string): void {
  const file = path.join('/proc/sys', ...key.split('.'));
  inNetns(ns, () => {
    try {
      fs.writeFileSync(file, value);
    } catch (e) {
      throw asKernelError('sysctl', `${key}=${value}`, e);
    }
  });
}

export function readSysctl(ns: string | undefined, key: string): string {
  const file = path.join('/proc/sys', ...key.split('.'));
  return inNetns(ns, () => fs.readFileSync(file, 'utf8').trim());
}

function asKernelError(op: string, object: string, e: unknown): KernelError {
  if (e instanceof KernelError) return e;
  if (e instanceof SyscallError) return new KernelError(op, object, e.errno, e.code, e.syscall);
  const ne = e as NodeJS.ErrnoException;
  return new KernelError(op, object, Math.abs(ne.errno ?? 0), ne.code ?? 'EIO', ne.message);
}
