// Issue 5: images: pull from a registry on loopback (Debian's docker-registry), load docker-save
// and OCI-layout archives, import a rootfs tarball; bad archives change nothing.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildBusyboxRootfs } from '../../src/lab/image.js';
import { skipUnlessRoot } from './helpers.js';
import { SwarmLab, hasDocker, waitFor } from './swarm-helpers.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const REGISTRY = '/usr/bin/docker-registry';
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe(
  'images on a lab host',
  { skip: skipUnlessRoot || (!hasDocker && 'needs the docker CLI') || (!fs.existsSync(REGISTRY) && 'needs docker-registry') },
  () => {
    let lab: SwarmLab;
    let tmp: string;
    let registry: ChildProcess | undefined;
    let rootfs: string;

    before(async () => {
      lab = await SwarmLab.up('img', 1);
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${lab.name}-`));
      rootfs = path.join(tmp, 'rootfs.tar');
      buildBusyboxRootfs(rootfs);
    });
    after(async () => {
      if (registry?.pid) process.kill(registry.pid, 'SIGKILL');
      await lab?.down();
      fs.rmSync(tmp, { recursive: true, force: true });
    });

    it('import a rootfs tarball (docker and vxswarm CLIs), with --change', async () => {
      const d = await lab.docker('node1', ['import', '--change', 'CMD ["sh"]', rootfs, 'bb:imported']);
      assert.equal(d.code, 0, d.stderr);
      assert.match(d.stdout, /^sha256:[0-9a-f]{64}\n$/);
      const v = await lab.vx('node1', ['import', rootfs, 'bb:vx']);
      assert.equal(v.code, 0, v.stderr);
      const img = await lab.api('node1').get<Json>('/images/bb:imported/json');
      assert.deepEqual(img.Config.Cmd, ['sh']);
      assert.equal(img.RootFS.Layers.length, 1);
      assert.equal(img.RootFS.Layers[0], `sha256:${sha(fs.readFileSync(rootfs))}`, 'the layer is content-addressed by its diff ID');
      const ls = await lab.docker('node1', ['images', '--format', '{{.Repository}}:{{.Tag}}']);
      assert.deepEqual(ls.stdout.trim().split('\n').sort(), ['bb:imported', 'bb:vx']);
      // docker info counts what docker images lists
      const ids = (await lab.api('node1').get<Json[]>('/images/json')).length;
      assert.equal((await lab.api('node1').get<Json>('/info')).Images, ids);
    });

    it('load a docker-save archive and an OCI layout', async () => {
      const layer = fs.readFileSync(rootfs);
      const diff = `sha256:${sha(layer)}`;
      const cfg = Buffer.from(
        JSON.stringify({
          architecture: 'amd64',
          os: 'linux',
          created: '2026-01-01T00:00:00Z',
          config: { Cmd: ['sh'] },
          rootfs: { type: 'layers', diff_ids: [diff] },
        }),
      );
      const save = path.join(tmp, 'save');
      fs.mkdirSync(path.join(save, 'l1'), { recursive: true });
      fs.writeFileSync(path.join(save, 'l1/layer.tar'), layer);
      fs.writeFileSync(path.join(save, `${sha(cfg)}.json`), cfg);
      fs.writeFileSync(path.join(save, 'manifest.json'), JSON.stringify([{ Config: `${sha(cfg)}.json`, RepoTags: ['saved:1'], Layers: ['l1/layer.tar'] }]));
      spawnSync('tar', ['-C', save, '-cf', path.join(tmp, 'save.tar'), '.']);
      const d = await lab.docker('node1', ['load', '-i', path.join(tmp, 'save.tar')]);
      assert.equal(d.code, 0, d.stderr);
      assert.match(d.stdout, /Loaded image: saved:1/);
      assert.equal((await lab.api('node1').get<Json>('/images/saved:1/json')).Id, `sha256:${sha(cfg)}`);

      const oci = path.join(tmp, 'oci');
      const blobs = path.join(oci, 'blobs/sha256');
      fs.mkdirSync(blobs, { recursive: true });
      fs.writeFileSync(path.join(blobs, sha(layer)), layer);
      fs.writeFileSync(path.join(blobs, sha(cfg)), cfg);
      const man = Buffer.from(
        JSON.stringify({ schemaVersion: 2, config: { digest: `sha256:${sha(cfg)}`, size: cfg.length }, layers: [{ digest: diff, size: layer.length }] }),
      );
      fs.writeFileSync(path.join(blobs, sha(man)), man);
      fs.writeFileSync(
        path.join(oci, 'index.json'),
        JSON.stringify({ schemaVersion: 2, manifests: [{ digest: `sha256:${sha(man)}`, annotations: { 'io.containerd.image.name': 'oci:1' } }] }),
      );
      fs.writeFileSync(path.join(oci, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      spawnSync('tar', ['-C', oci, '-cf', path.join(tmp, 'oci.tar'), '.']);
      const v = await lab.vx('node1', ['load', '-i', path.join(tmp, 'oci.tar')]);
      assert.equal(v.code, 0, v.stderr);
      assert.match(v.stdout, /Loaded image: oci:1/);

      // Garbage is refused and adds nothing.
      fs.writeFileSync(path.join(tmp, 'junk.tar'), 'not a tarball at all');
      const before = (await lab.api('node1').get<Json[]>('/images/json')).length;
      const bad = await lab.docker('node1', ['load', '-i', path.join(tmp, 'junk.tar')]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /not a tar archive|neither manifest.json/);
      assert.equal((await lab.api('node1').get<Json[]>('/images/json')).length, before);
    });

    it('pull from a registry on the host loopback (docker-registry), then an unknown tag fails cleanly', async () => {
      const ns = lab.host('node1').netns;
      const cfg = path.join(tmp, 'registry.yml');
      fs.writeFileSync(cfg, `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${tmp}/registry\nhttp:\n  addr: 127.0.0.1:5000\nlog:\n  level: error\n`);
      registry = spawn('ip', ['netns', 'exec', ns, REGISTRY, 'serve', cfg], { stdio: 'ignore' });
      await waitFor(
        'registry up',
        async () => (spawnSync('ip', ['netns', 'exec', ns, 'bash', '-c', 'exec 3<>/dev/tcp/127.0.0.1/5000']).status === 0 ? true : undefined),
        10000,
        100,
      );
      const push = spawnSync(
        'ip',
        ['netns', 'exec', ns, process.execPath, '--import', 'tsx', 'test/lab/fixtures/registry-push.ts', '127.0.0.1:5000', 'team/bb', 'v1', rootfs],
        { encoding: 'utf8' },
      );
      assert.equal(push.status, 0, push.stderr);
      const digest = push.stdout.trim();
      const d = await lab.docker('node1', ['pull', '127.0.0.1:5000/team/bb:v1']);
      assert.equal(d.code, 0, d.stderr);
      const img = await lab.api('node1').get<Json>('/images/127.0.0.1:5000/team/bb:v1/json');
      assert.deepEqual(img.RepoDigests, [`127.0.0.1:5000/team/bb@${digest}`]);
      const v = await lab.vx('node1', ['pull', '127.0.0.1:5000/team/bb:nosuch']);
      assert.notEqual(v.code, 0);
      assert.match(v.stderr, /manifest for team\/bb:nosuch not found/);
      const hub = await lab.docker('node1', ['pull', 'ubuntu']);
      assert.notEqual(hub.code, 0, 'no traffic to a public registry');
    });
  },
);
