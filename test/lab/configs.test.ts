// Issue 16, swarm configs with the stock docker CLI: config create/ls/inspect/rm, a service's
// --config as a read-only file with its mode and owner in the task's container (on a worker: the
// data travels with the assignment), refused while in use, only labels updatable.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { skipUnlessRoot } from './helpers.js';
import { SwarmLab, formSwarm, hasDocker, waitFor } from './swarm-helpers.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('configs', { skip: skipUnlessRoot || (!hasDocker && 'needs the docker CLI') }, () => {
  let lab: SwarmLab;
  let dir = '';
  const docker = (host: string, args: string[]): Promise<string> => lab.dockerOk(host, args);

  before(async () => {
    lab = await SwarmLab.up('cfg', 2);
    await formSwarm(lab);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `${lab.name}-`));
  });
  after(async () => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    await lab?.down();
  });

  it('a config becomes a read-only file in the task on a worker; in use it cannot be removed', async () => {
    const file = path.join(dir, 'app.conf');
    fs.writeFileSync(file, 'listen 8080\nname "vxswarm"\n');
    const id = (await docker('node1', ['config', 'create', '--label', 'team=a', 'app-cfg', file])).trim();
    assert.match(id, /^[a-z0-9]{25}$/);
    assert.match(await docker('node1', ['config', 'ls']), /^ID\s+NAME\s+CREATED\s+UPDATED\n\S+\s+app-cfg\s+/);
    const ins = JSON.parse(await docker('node1', ['config', 'inspect', 'app-cfg'])) as Json[];
    assert.equal(ins[0]!.ID, id);
    assert.equal(Buffer.from(ins[0]!.Spec.Data as string, 'base64').toString(), 'listen 8080\nname "vxswarm"\n');
    assert.deepEqual(ins[0]!.Spec.Labels, { team: 'a' });

    await docker('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'app',
      '--constraint',
      'node.hostname==node2',
      '--config',
      'source=app-cfg,target=/etc/app.conf,mode=0440,uid=1000',
      '--config',
      'app-cfg',
      'busybox:local',
      'sleep',
      '100000',
    ]);
    const svc = JSON.parse(await docker('node1', ['service', 'inspect', 'app'])) as Json[];
    const refs = svc[0]!.Spec.TaskTemplate.ContainerSpec.Configs as Json[];
    assert.deepEqual(
      refs.map((r) => [r.ConfigName, r.ConfigID, r.File.Name, r.File.Mode, r.File.UID]),
      [
        ['app-cfg', id, '/etc/app.conf', 0o440, '1000'],
        ['app-cfg', id, '/app-cfg', 0o444, '0'],
      ],
    );
    const c = await lab.containerOf('node2', 'app');
    assert.equal(await docker('node2', ['exec', c, 'cat', '/etc/app.conf']), 'listen 8080\nname "vxswarm"\n');
    assert.equal((await docker('node2', ['exec', c, 'stat', '-c', '%a %u', '/etc/app.conf'])).trim(), '440 1000');
    assert.equal((await docker('node2', ['exec', c, 'stat', '-c', '%a %u', '/app-cfg'])).trim(), '444 0');
    const write = await lab.docker('node2', ['exec', c, 'sh', '-c', 'echo x > /etc/app.conf']);
    assert.notEqual(write.code, 0, 'read-only in the container');

    // In use: refused, and still there.
    const rm = await lab.docker('node1', ['config', 'rm', 'app-cfg']);
    assert.notEqual(rm.code, 0);
    assert.match(rm.stderr, /config 'app-cfg' is in use by the following service: app/);
    assert.equal((await docker('node1', ['config', 'ls', '-q'])).trim(), id);
    await docker('node1', ['service', 'rm', 'app']);
    await waitFor(
      'the config removable once the service is gone',
      async () => ((await lab.docker('node1', ['config', 'rm', 'app-cfg'])).code === 0 ? true : undefined),
      10_000,
      200,
    );
    assert.equal((await docker('node1', ['config', 'ls', '-q'])).trim(), '');
  });

  it('bad input changes nothing: a name taken, empty data, an unknown config in a service, a data update', async () => {
    const file = path.join(dir, 'b.conf');
    fs.writeFileSync(file, 'b\n');
    await docker('node1', ['config', 'create', 'b-cfg', file]);
    const again = await lab.docker('node1', ['config', 'create', 'b-cfg', file]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /config b-cfg already exists/);
    // The CLI itself refuses empty data; the API does too.
    const empty = await lab.raw('node1', 'POST', '/configs/create', JSON.stringify({ Name: 'empty-cfg', Data: '' }), { 'Content-Type': 'application/json' });
    assert.equal(empty.status, 400);
    assert.match(empty.body, /config data must be larger than 0/);
    const templ = await lab.raw('node1', 'POST', '/configs/create', JSON.stringify({ Name: 't-cfg', Data: 'eA==', Templating: { Name: 'golang' } }), {
      'Content-Type': 'application/json',
    });
    assert.equal(templ.status, 400);
    assert.match(templ.body, /Templating is not supported yet/);
    const svc = await lab.docker('node1', ['service', 'create', '-d', '--name', 'x', '--config', 'nosuch', 'busybox:local', 'true']);
    assert.notEqual(svc.code, 0);
    assert.match(svc.stderr, /nosuch/);
    assert.equal((await docker('node1', ['service', 'ls', '-q'])).trim(), '');
    const cur = (JSON.parse(await docker('node1', ['config', 'inspect', 'b-cfg'])) as Json[])[0]!;
    const up = await lab.raw(
      'node1',
      'POST',
      `/configs/${cur.ID}/update?version=${cur.Version.Index}`,
      JSON.stringify({ Name: 'b-cfg', Data: Buffer.from('changed').toString('base64') }),
      { 'Content-Type': 'application/json' },
    );
    assert.equal(up.status, 400);
    assert.match(up.body, /only updates to Labels are allowed/);
    const labels = await lab.raw(
      'node1',
      'POST',
      `/configs/${cur.ID}/update?version=${cur.Version.Index}`,
      JSON.stringify({ Name: 'b-cfg', Labels: { k: 'v' }, Data: cur.Spec.Data }),
      { 'Content-Type': 'application/json' },
    );
    assert.equal(labels.status, 200, labels.body);
    const now = (JSON.parse(await docker('node1', ['config', 'inspect', 'b-cfg'])) as Json[])[0]!;
    assert.deepEqual(now.Spec.Labels, { k: 'v' });
    assert.equal(now.Spec.Data, cur.Spec.Data);
  });
});
