// Filesystem mounts for container root filesystems: overlayfs over image layers, and the
// inventory (/proc/self/mountinfo) that crash cleanup and lab teardown walk.
import fs from 'node:fs';
import { KernelError } from '../core/errors.js';
import { MNT_DETACH, SyscallError, mount, umount2 } from './libc.js';

/** Mounts overlayfs at `target`: `lowers` top-most first, as overlayfs wants them. */
export function mountOverlay(target: string, lowers: string[], upper: string, work: string): void {
  const data = `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`;
  // The mount(2) data page is 4096 bytes; deep images would need short layer links (Docker's "l/" dir).
  if (data.length > 4000) throw new KernelError('mount overlay', target, 7, 'E2BIG', `${lowers.length} layers exceed the mount data page`);
  try {
    mount('overlay', target, 'overlay', 0, data);
  } catch (e) {
    if (e instanceof SyscallError) throw new KernelError('mount overlay', target, e.errno, e.code);
    throw e;
  }
}

/** Detaches the mount at `target`; a path that is not mounted is fine. */
export function unmount(target: string): void {
  try {
    umount2(target, MNT_DETACH);
  } catch (e) {
    if (e instanceof SyscallError && (e.code === 'EINVAL' || e.code === 'ENOENT')) return;
    if (e instanceof SyscallError) throw new KernelError('unmount', target, e.errno, e.code);
    throw e;
  }
}

/** Mount points at or under `prefix`, deepest first (the order to unmount them in). */
export function mountsUnder(prefix: string): string[] {
  const points = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === prefix || p.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}
