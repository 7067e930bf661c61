import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { answer, ptrToIp, type DnsRecord } from '../../src/dns/records.js';

const recs: DnsRecord[] = [
  { networkId: 'A', networkName: 'net-a', ip: '10.0.0.3', name: 'web.1.aaa', service: 'web', aliases: ['www'] },
  { networkId: 'A', networkName: 'net-a', ip: '10.0.0.4', name: 'web.2.bbb', service: 'web' },
  { networkId: 'B', networkName: 'net-b', ip: '10.0.1.3', name: 'db.1.ccc', service: 'db' },
];
const onA = new Set(['A']);

describe('embedded DNS answers', () => {
  it('service and tasks.service give every task IP on shared networks', () => {
    assert.deepEqual(answer('web', 'A', recs, onA), { kind: 'a', ips: ['10.0.0.3', '10.0.0.4'] });
    assert.deepEqual(answer('tasks.web.', 'A', recs, onA), { kind: 'a', ips: ['10.0.0.3', '10.0.0.4'] });
    assert.deepEqual(answer('WEB', 'A', recs, onA), { kind: 'a', ips: ['10.0.0.3', '10.0.0.4'] });
  });
  it('a task name and an alias resolve to that task', () => {
    assert.deepEqual(answer('web.2.bbb', 'A', recs, onA), { kind: 'a', ips: ['10.0.0.4'] });
    assert.deepEqual(answer('www', 'A', recs, onA), { kind: 'a', ips: ['10.0.0.3'] });
  });
  it('a service on a network the asker is not on does not resolve', () => {
    assert.deepEqual(answer('db', 'A', recs, onA), { kind: 'nxdomain' });
    assert.deepEqual(answer('db', 'A', recs, new Set(['B'])), { kind: 'a', ips: ['10.0.1.3'] });
  });
  it('PTR names the task on its network; unknown overlay addresses are NXDOMAIN, others forwarded', () => {
    assert.equal(ptrToIp('3.0.0.10.in-addr.arpa'), '10.0.0.3');
    assert.deepEqual(answer('3.0.0.10.in-addr.arpa', 'PTR', recs, onA), { kind: 'ptr', name: 'web.1.aaa.net-a' });
    const overlays = ['10.0.0.0/24', '10.0.1.0/24', '10.8.0.0/16'];
    assert.deepEqual(answer('9.0.0.10.in-addr.arpa', 'PTR', recs, onA, overlays), { kind: 'nxdomain' });
    // Decided by the networks' subnets, not by nearby task addresses: no task is in 10.8.x.x.
    assert.deepEqual(answer('7.200.8.10.in-addr.arpa', 'PTR', recs, onA, overlays), { kind: 'nxdomain' });
    assert.deepEqual(answer('9.0.0.10.in-addr.arpa', 'PTR', recs, onA, []), { kind: 'forward' });
    assert.deepEqual(answer('1.1.168.192.in-addr.arpa', 'PTR', recs, onA, overlays), { kind: 'forward' });
  });
  it('vip mode: the service name and its aliases give the VIP on the shared network, tasks.<service> the tasks; a VIP has no PTR', () => {
    const withVip: DnsRecord[] = [
      ...recs,
      { networkId: 'A', networkName: 'net-a', ip: '10.0.0.2', name: 'web', service: 'web', aliases: ['www'], vip: true },
      { networkId: 'B', networkName: 'net-b', ip: '10.0.1.2', name: 'web', service: 'web', vip: true },
    ];
    assert.deepEqual(answer('web', 'A', withVip, onA), { kind: 'a', ips: ['10.0.0.2'] });
    assert.deepEqual(answer('www', 'A', withVip, onA), { kind: 'a', ips: ['10.0.0.2'] });
    assert.deepEqual(answer('tasks.web', 'A', withVip, onA), { kind: 'a', ips: ['10.0.0.3', '10.0.0.4'] });
    assert.deepEqual(answer('web', 'A', withVip, new Set(['B'])), { kind: 'a', ips: ['10.0.1.2'] });
    assert.deepEqual(answer('web.1.aaa', 'A', withVip, onA), { kind: 'a', ips: ['10.0.0.3'] });
    assert.deepEqual(answer('2.0.0.10.in-addr.arpa', 'PTR', withVip, onA, ['10.0.0.0/24']), { kind: 'nxdomain' });
    // dnsrr: no VIP record, the name is the tasks (the first test).
  });
  it('unknown single labels are NXDOMAIN at once; other names go upstream; AAAA of a known name is empty', () => {
    assert.deepEqual(answer('nosuch', 'A', recs, onA), { kind: 'nxdomain' });
    assert.deepEqual(answer('example.org', 'A', recs, onA), { kind: 'forward' });
    assert.deepEqual(answer('web', 'AAAA', recs, onA), { kind: 'a', ips: [] });
  });
});
