// Issue 16, volumes and mounts for services, with the stock docker CLI: a named volume (made on
// demand on the task's node, filled from the image), a read-only bind mount and a tmpfs; `volume
// ls/inspect/rm/prune`; a volume in use cannot be removed; a bind source that does not exist
// rejects the task with Docker's reason.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { skipUnlessRoot } from './helpers.js';
import { SwarmLab, formSwarm, hasDocker, waitFor } from './swarm-helpers.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('volumes and mounts', { skip: skipUnlessRoot || (!hasDocker && 'needs the docker CLI') }, () => {
  let lab: SwarmLab;
  let bindDir = '';
  const docker = (host: string, args: string[]): Promise<string> => lab.dockerOk(host, args);
  const containerOf = (svc: string): Promise<string> => lab.containerOf('node1', svc);

  before(async () => {
    lab = await SwarmLab.up('vol', 2);
    await formSwarm(lab);
    bindDir = fs.mkdtempSync(path.join(os.tmpdir(), `${lab.name}-bind-`));
    fs.writeFileSync(path.join(bindDir, 'hello.txt'), 'from the host\n');
  });
  after(async () => {
    if (bindDir) fs.rmSync(bindDir, { recursive: true, force: true });
    await lab?.down();
  });

  it('a volume, a read-only bind and a tmpfs reach the task; the volume keeps what was written', async () => {
    await docker('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'store',
      '--constraint',
      'node.hostname==node1',
      '--mount',
      'type=volume,source=data,target=/data,volume-label=team=a',
      '--mount',
      `type=bind,source=${bindDir},target=/host,readonly`,
      '--mount',
      'type=tmpfs,target=/scratch,tmpfs-size=1048576',
      '--mount',
      'type=volume,source=etc-copy,target=/etc',
      'busybox:local',
      'sleep',
      '100000',
    ]);
    const c = await containerOf('store');
    await docker('node1', ['exec', c, 'sh', '-c', 'echo kept > /data/file']);
    assert.equal((await docker('node1', ['exec', c, 'cat', '/host/hello.txt'])).trim(), 'from the host');
    const ro = await lab.docker('node1', ['exec', c, 'sh', '-c', 'echo x > /host/new']);
    assert.notEqual(ro.code, 0, 'the bind is read-only');
    assert.match(ro.stderr + ro.stdout, /Read-only file system/);
    const mounts = await docker('node1', ['exec', c, 'cat', '/proc/mounts']);
    assert.match(mounts, /^tmpfs \/scratch tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k/m);
    // a new volume starts with what the image has at its target: the image's /etc/passwd is in it
    assert.match(await docker('node1', ['exec', c, 'cat', '/etc/passwd']), /^root:x:0:0:/);
    const etc = (JSON.parse(await docker('node1', ['volume', 'inspect', 'etc-copy'])) as Json[])[0]!;
    assert.ok(fs.existsSync(path.join(etc.Mountpoint as string, 'passwd')), 'copied into the volume on the host');
    const vol = (JSON.parse(await docker('node1', ['volume', 'inspect', 'data'])) as Json[])[0]!;
    assert.equal(vol.Driver, 'local');
    assert.deepEqual(vol.Labels, { team: 'a' });
    assert.equal(fs.readFileSync(path.join(vol.Mountpoint as string, 'file'), 'utf8'), 'kept\n');
    const inspect = (JSON.parse(await docker('node1', ['inspect', c])) as Json[])[0]!;
    const kinds = (inspect.Mounts as Json[]).map((m) => `${m.Type}:${m.Destination}:${m.RW}`).sort();
    assert.deepEqual(kinds, ['bind:/host:false', 'tmpfs:/scratch:true', 'volume:/data:true', 'volume:/etc:true']);
    assert.match(await docker('node1', ['volume', 'ls', '--format', '{{.Driver}} {{.Name}}']), /^local data$/m);
    assert.equal((await docker('node2', ['volume', 'ls', '-q'])).trim(), '', 'nothing made on the node without the task');
  });

  it('a volume in use cannot be removed; once its task is gone it can, and prune takes what is left', async () => {
    const rm = await lab.docker('node1', ['volume', 'rm', 'data']);
    assert.notEqual(rm.code, 0);
    assert.match(rm.stderr, /remove data: volume is in use - \[[0-9a-f]{64}\]/);
    await docker('node1', ['service', 'rm', 'store']);
    await waitFor(
      'the task container gone',
      async () => ((await docker('node1', ['ps', '-aq', '--filter', 'label=com.docker.swarm.service.name=store'])).trim() === '' ? true : undefined),
      30_000,
      200,
    );
    assert.equal((await docker('node1', ['volume', 'rm', 'data'])).trim(), 'data');
    await docker('node1', ['volume', 'create', '--label', 'keep=1', 'kept']);
    const pruned = await docker('node1', ['volume', 'prune', '-a', '-f', '--filter', 'label!=keep']);
    assert.match(pruned, /Deleted Volumes:\netc-copy\n/);
    assert.deepEqual((await docker('node1', ['volume', 'ls', '-q'])).trim().split('\n'), ['kept']);
    const ours = await lab.vx('node1', ['volume', 'ls', '-q']);
    assert.equal(ours.stdout.trim(), 'kept', 'our CLI lists the same');
    const bad = await lab.docker('node1', ['volume', 'create', 'x']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /includes invalid characters for a local volume name/);
  });

  it("docker stack deploy of a compose file with a named volume: the stack's volume is made, labelled, and mounted", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${lab.name}-stack-`));
    try {
      fs.writeFileSync(
        path.join(dir, 'compose.yml'),
        [
          'services:',
          '  db:',
          '    image: busybox:local',
          '    command: ["sh", "-c", "echo ready > /var/lib/db/state && sleep 100000"]',
          '    volumes:',
          '      - dbdata:/var/lib/db',
          '    deploy:',
          '      placement:',
          '        constraints: ["node.hostname==node1"]',
          'volumes:',
          '  dbdata:',
          '    labels:',
          '      tier: data',
          '',
        ].join('\n'),
      );
      await docker('node1', ['stack', 'deploy', '--detach=true', '-c', path.join(dir, 'compose.yml'), 'app']);
      const vol = await waitFor(
        'the stack volume',
        async () => {
          const r = await lab.docker('node1', ['volume', 'inspect', 'app_dbdata']);
          return r.code === 0 ? (JSON.parse(r.stdout) as Json[])[0] : undefined;
        },
        30_000,
        200,
      );
      assert.equal(vol.Labels['com.docker.stack.namespace'], 'app');
      assert.equal(vol.Labels.tier, 'data');
      await waitFor('the state written into it', async () => (fs.existsSync(path.join(vol.Mountpoint as string, 'state')) ? true : undefined), 30_000, 200);
      await docker('node1', ['stack', 'rm', 'app']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a bind source that does not exist rejects the task, with Docker's reason", async () => {
    await docker('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'nobind',
      '--constraint',
      'node.hostname==node1',
      '--mount',
      'type=bind,source=/nonexistent-vxswarm,target=/x',
      'busybox:local',
      'sleep',
      '100000',
    ]);
    const all = (): Promise<Json[]> => lab.api('node1').get<Json[]>(`/tasks?filters=${encodeURIComponent(JSON.stringify({ service: { nobind: true } }))}`);
    const t = await waitFor('a rejected task', async () => (await all()).find((x) => x.Status.State === 'rejected'), 30_000, 200);
    assert.match(t.Status.Err, /invalid mount config for type "bind": bind source path does not exist: \/nonexistent-vxswarm/);
    await docker('node1', ['service', 'rm', 'nobind']);
  });
});
