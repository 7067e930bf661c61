// The demo's image: a root filesystem built from Debian's busybox-static (sh, ping, traceroute,
// nslookup, ...), since this machine reaches no public registry.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VxError } from '../core/errors.js';

export const BUSYBOX = '/bin/busybox';
export const DEMO_IMAGE = 'busybox:local';

/** Writes a rootfs tarball (for `docker import`) to `out`. */
export function buildBusyboxRootfs(out: string): void {
  if (!fs.existsSync(BUSYBOX)) throw new VxError(`${BUSYBOX} not found: install Debian's busybox-static`, 500);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxswarm-rootfs-'));
  try {
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'root', 'var/run', 'home'])
      fs.mkdirSync(path.join(dir, d), { recursive: true });
    fs.chmodSync(path.join(dir, 'tmp'), 0o1777);
    fs.copyFileSync(BUSYBOX, path.join(dir, 'bin/busybox'));
    fs.chmodSync(path.join(dir, 'bin/busybox'), 0o755);
    const applets = spawnSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox');
    for (const a of applets) fs.symlinkSync('busybox', path.join(dir, 'bin', a));
    // The seed types `docker exec -it <id> bash`: busybox has no bash applet, so bash is its shell.
    fs.writeFileSync(path.join(dir, 'bin/bash'), '#!/bin/sh\nexec /bin/sh "$@"\n', { mode: 0o755 });
    fs.writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
    fs.writeFileSync(path.join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    const r = spawnSync('tar', ['-C', dir, '--numeric-owner', '--owner=0', '--group=0', '-cf', out, '.'], { encoding: 'utf8' });
    if (r.status !== 0) throw new VxError(`tar failed: ${r.stderr}`, 500);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
