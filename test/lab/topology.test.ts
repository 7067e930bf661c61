// Issue 19: the topology page in headless Chromium (Debian's, driven by playwright-core, nothing
// downloaded) and `vxswarm explain path`, on the seed's two hosts and two containers. The
// reconciler is paused (a one-hour period) so an FDB entry deleted by hand stays deleted.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { skipUnlessRoot } from './helpers.js';
import { SwarmLab, formSwarm, waitFor } from './swarm-helpers.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const execFileP = promisify(execFile);
const CHROMIUM = '/usr/bin/chromium';
const ADDR = '127.0.0.1:9323';
/** Screenshots are kept here for a person to look at (the test checks the page, not the picture). */
export const ARTIFACTS = path.resolve('test-artifacts');

describe('the overlay seen live: topology page and explain path', { skip: skipUnlessRoot || (!fs.existsSync(CHROMIUM) && 'needs Debian chromium') }, () => {
  let lab: SwarmLab;
  let wrapper = '';
  const vx = async (host: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => lab.vx(host, args);
  const running = async (n: number): Promise<Json[]> =>
    waitFor(
      `${n} running test tasks`,
      async () => {
        const ts = (await lab.api('node1').get<Json[]>(`/tasks?filters=${encodeURIComponent(JSON.stringify({ service: { test: true } }))}`)).filter(
          (t) => t.DesiredState === 'running' && t.Status.State === 'running',
        );
        return ts.length === n ? ts : undefined;
      },
      30_000,
      200,
    );
  const containerOn = async (host: string): Promise<{ id: string; ip: string }> => {
    const [c] = await lab
      .api(host)
      .get<Json[]>(`/containers/json?filters=${encodeURIComponent(JSON.stringify({ label: ['com.docker.swarm.service.name=test'] }))}`);
    assert.ok(c, `a test container on ${host}`);
    return { id: c.Id as string, ip: c.NetworkSettings.Networks['uber-net'].IPAddress as string };
  };

  before(async () => {
    lab = await SwarmLab.up('topo', 2, 3_600_000, ['--metrics-addr', ADDR]);
    await formSwarm(lab);
    const ok = async (host: string, args: string[]): Promise<void> => {
      const r = await vx(host, args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    };
    await ok('node1', ['network', 'create', '-d', 'overlay', 'uber-net']);
    await ok('node1', ['service', 'create', '-d', '--name', 'test', '--network', 'uber-net', '--replicas', '2', 'busybox:local', 'sleep', 'infinity']);
    await running(2);
    // Chromium runs inside node1's namespace, where the daemon serves the page on its loopback.
    wrapper = path.join(os.tmpdir(), `${lab.name}-chromium.sh`);
    fs.writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${lab.host('node1').netns} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
  });
  after(async () => {
    if (wrapper) fs.rmSync(wrapper, { force: true });
    await lab?.down();
  });

  it('explain path names every hop from a container on node1 to one on node2, by address and by the service name', async () => {
    const a = await containerOn('node1');
    const b = await containerOn('node2');
    const r = await vx('node1', ['explain', 'path', a.id.slice(0, 12), b.ip]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const lines = r.stdout;
    for (const want of [
      new RegExp(`\\[node1\\] container: test\\.\\d\\.\\w+: eth0 ${a.ip.replace(/\./g, '\\.')}/24`),
      /\[node1\] veth: eth0 ↔ veth[0-9a-f]{8} in sandbox \S+, master br0/,
      new RegExp(
        `\\[node1\\] neighbour: .*\\n\\s+entry: neigh ${b.ip.replace(/\./g, '\\.')} lladdr [0-9a-f:]{17} PERMANENT dev vxlan0 \\(gossip entry \\w+ in overlay_peer_table, written by node2\\)`,
      ),
      /\[node1\] FDB: .*\n\s+entry: fdb [0-9a-f:]{17} dev vxlan0 dst 192\.168\.1\.5 self permanent/,
      /\[node1\] VTEP: vxlan0 VNI \d+ wraps the frame in UDP 172\.31\.1\.5:4789 → 192\.168\.1\.5:4789/,
      /\[node1\] underlay: \S+ 172\.31\.1\.5\/24 → 192\.168\.1\.5 via the router 172\.31\.1\.1/,
      /\[node2\] VTEP: vxlan0 VNI \d+ on 192\.168\.1\.5:4789/,
      /\[node2\] bridge: br0 forwards [0-9a-f:]{17} to veth[0-9a-f]{8}/,
      new RegExp(`\\[node2\\] container: test\\.\\d\\.\\w+: eth0 ${b.ip.replace(/\./g, '\\.')} mac [0-9a-f:]{17}: delivered`),
      /result: delivered/,
    ])
      assert.match(lines, want);
    const byName = await vx('node1', ['explain', 'path', a.id, 'test']);
    assert.equal(byName.code, 0, byName.stdout + byName.stderr);
    assert.match(byName.stdout, /DNS: test resolves to (10\.0\.\d+\.\d+)/);
    assert.match(byName.stdout, /VIP: \S+ is a service VIP: each new connection is DNATed to one of/);
    assert.match(byName.stdout, /entry: nft table ip vxswarm .*map vips/);
    assert.match(byName.stdout, /result: delivered/);
  });

  it("a published port: from node1's address through its ingress sandbox over the ingress overlay to the task on node2", async () => {
    const r0 = await vx('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'web',
      '-p',
      '8080:80',
      '--constraint',
      'node.hostname==node2',
      'busybox:local',
      'sh',
      '-c',
      'mkdir -p /www && exec httpd -f -p 80 -h /www',
    ]);
    assert.equal(r0.code, 0, r0.stderr);
    const r = await waitFor(
      'the published path explained, delivered',
      async () => {
        const x = await vx('node1', ['explain', 'path', '-', '172.31.1.5:8080']);
        return x.code === 0 ? x : undefined;
      },
      30_000,
      300,
    );
    assert.match(r.stdout, /\[node1\] published port: .*\n\s+entry: nft table ip vxswarm_ports: .*tcp \. 8080 → dnat to 172\.18\.\d+\.\d+:8080/);
    assert.match(r.stdout, /\[node1\] ingress sandbox: .* picks a task per connection among 10\.255\.\d+\.\d+ \(port 80\)/);
    assert.match(r.stdout, /\[node1\] VTEP: vxlan0 VNI 4096 wraps the frame in UDP 172\.31\.1\.5:4789 → 192\.168\.1\.5:4789/);
    assert.match(r.stdout, /\[node2\] container: web\.1\.\w+: eth0 10\.255\.\d+\.\d+ mac \S+: delivered/);
    const rm = await vx('node1', ['service', 'rm', 'web']);
    assert.equal(rm.code, 0, rm.stderr);
  });

  it('an FDB entry deleted by hand (reconciler paused) is named as the fault', async () => {
    const a = await containerOn('node1');
    const b = await containerOn('node2');
    const topo = await lab.api('node1').get<Json>('/vxswarm/topology');
    const net = (topo.nodes[0].networks as Json[]).find((n) => n.name === 'uber-net')!;
    const peer = (net.peers as Json[]).find((p) => p.ip === b.ip)!;
    await execFileP('ip', ['netns', 'exec', net.sandbox, 'bridge', 'fdb', 'del', peer.mac, 'dev', 'vxlan0', 'dst', peer.vtep, 'self']);
    const r = await vx('node1', ['explain', 'path', a.id, b.ip]);
    assert.equal(r.code, 1, 'not delivered: exit code 1');
    assert.match(r.stdout, new RegExp(`FAULT: missing FDB entry ${peer.mac} dst ${peer.vtep.replace(/\./g, '\\.')} on vxlan0 in ${net.sandbox}`));
    assert.match(r.stdout, /result: not delivered: missing FDB entry/);
    // Put back by hand, as the paused reconciler would have.
    await execFileP('ip', ['netns', 'exec', net.sandbox, 'bridge', 'fdb', 'replace', peer.mac, 'dev', 'vxlan0', 'dst', peer.vtep, 'self', 'permanent']);
    assert.equal((await vx('node1', ['explain', 'path', a.id, b.ip])).code, 0);
  });

  it('the page in Chromium shows both hosts, the sandboxes, the VTEP with its VNI and both containers; a scale adds one live', async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: wrapper,
      headless: true,
      args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
      await page.goto(`http://${ADDR}/ui`);
      await page.waitForSelector('[data-host="node1"] [data-container]');
      await page.evaluate(() => ((window as unknown as { loadedOnce: boolean }).loadedOnce = true));
      for (const host of ['node1', 'node2']) assert.equal(await page.locator(`[data-host="${host}"]`).count(), 1, host);
      assert.equal(await page.locator('[data-host] [data-sandbox][data-network="uber-net"]').count(), 2, 'a sandbox for uber-net on each host');
      const vteps = await page.locator('[data-network="uber-net"] [data-vni]').allTextContents();
      assert.equal(vteps.length, 2);
      for (const t of vteps) assert.match(t, /vxlan0 VNI \d+ · VTEP (172\.31\.1\.5|192\.168\.1\.5):4789/);
      assert.ok((await page.locator('[data-tunnel]').count()) >= 1, 'a tunnel drawn between the VTEPs');
      assert.equal(await page.locator('[data-router]').count(), 1, 'the router between the two underlay networks');
      const a = await containerOn('node1');
      const b = await containerOn('node2');
      assert.match(
        await page.locator(`[data-host="node1"] [data-network="uber-net"] [data-ip="${a.ip}"]`).innerText(),
        new RegExp(`eth0 ${a.ip.replace(/\./g, '\\.')}`),
      );
      assert.match(
        await page.locator(`[data-host="node2"] [data-network="uber-net"] [data-ip="${b.ip}"]`).innerText(),
        new RegExp(`eth0 ${b.ip.replace(/\./g, '\\.')}`),
      );
      // Selecting a container: its sandbox's entries, judged, with the gossip entry behind each.
      await page.locator(`[data-ip="${a.ip}"]`).click();
      const row = await page.locator(`[data-entries] [data-peer="${b.ip}"]`).innerText();
      assert.match(row, /ok[\s\S]*ok[\s\S]*overlay_peer_table\/\w+ by node2/);
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'topology.png'), fullPage: true });
      // A scale shows without a reload.
      const r = await vx('node1', ['service', 'scale', '-d', 'test=3']);
      assert.equal(r.code, 0, r.stderr);
      await running(3);
      await page.waitForFunction(() => document.querySelectorAll('[data-network="uber-net"] [data-container]').length === 3, undefined, { timeout: 15_000 });
      assert.equal(await page.evaluate(() => (window as unknown as { loadedOnce?: boolean }).loadedOnce), true, 'the same page, not reloaded');
      assert.match(await page.locator('#members').innerText(), /node1[\s\S]*alive[\s\S]*node2[\s\S]*alive|node2[\s\S]*alive[\s\S]*node1[\s\S]*alive/);
    } finally {
      await browser.close();
    }
  });
});
