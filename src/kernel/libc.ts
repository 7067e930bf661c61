// The few libc calls Node does not expose: setns/unshare/mount/umount2/gettid.
// They act on the calling thread only, which is Node's main thread here, and every
// caller switches back before returning to the event loop.
import koffi from 'koffi';
import { constants } from 'node:os';

const libc = koffi.load('libc.so.6');

export const CLONE_NEWNET = 0x40000000;
export const MS_BIND = 4096;
export const MS_REC = 16384;
export const MS_SHARED = 1 << 20;
export const MNT_DETACH = 2;

const setnsFn = libc.func('int setns(int fd, int nstype)');
const unshareFn = libc.func('int unshare(int flags)');
const mountFn = libc.func('int mount(const char *src, const char *tgt, const char *fstype, unsigned long flags, const char *data)');
const umount2Fn = libc.func('int umount2(const char *tgt, int flags)');
const gettidFn = libc.func('int gettid()');

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));
export function errnoName(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `errno ${errno}`;
}

export class SyscallError extends Error {
  constructor(
    readonly syscall: string,
    readonly errno: number,
  ) {
    super(`${syscall}: ${errnoName(errno)}`);
  }
  get code(): string {
    return errnoName(this.errno);
  }
}

function check(name: string, rc: number): void {
  if (rc < 0) throw new SyscallError(name, koffi.errno());
}

export function setns(fd: number, nstype: number): void {
  check('setns', setnsFn(fd, nstype) as number);
}
export function unshare(flags: number): void {
  check('unshare', unshareFn(flags) as number);
}
export function mount(src: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): void {
  check('mount', mountFn(src, target, fstype, flags, data) as number);
}
export function umount2(target: string, flags: number): void {
  check('umount2', umount2Fn(target, flags) as number);
}
export function gettid(): number {
  return gettidFn() as number;
}
