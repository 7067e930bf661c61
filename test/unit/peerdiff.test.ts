import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diffPeers } from '../../src/overlay/peerdiff.js';

const M = (o: Record<string, string>) => new Map(Object.entries(o));
const F = (o: Record<string, string[]>) => new Map(Object.entries(o));
const none = { neigh: new Set<string>(), fdb: new Set<string>() };

test('first programming is adds, not repairs', () => {
  const d = diffPeers(M({ '10.0.0.4': 'aa' }), M({ aa: '192.168.1.5' }), new Map(), new Map(), none);
  assert.deepEqual(d.neighSet, [{ ip: '10.0.0.4', mac: 'aa' }]);
  assert.deepEqual(d.fdbSet, [{ mac: 'aa', dst: '192.168.1.5' }]);
  assert.deepEqual(d.repairs, { neigh: 0, fdb: 0 });
});

test('in sync: nothing to do', () => {
  const prog = { neigh: new Set(['10.0.0.4']), fdb: new Set(['aa']) };
  const d = diffPeers(M({ '10.0.0.4': 'aa' }), M({ aa: '1.1.1.1' }), M({ '10.0.0.4': 'aa' }), F({ aa: ['1.1.1.1'] }), prog);
  assert.deepEqual([d.neighSet, d.neighDel, d.fdbSet, d.fdbDel], [[], [], [], []]);
  assert.deepEqual(d.repairs, { neigh: 0, fdb: 0 });
});

test('entries lost behind our back are restored and counted', () => {
  const prog = { neigh: new Set(['10.0.0.4']), fdb: new Set(['aa']) };
  const d = diffPeers(M({ '10.0.0.4': 'aa' }), M({ aa: '1.1.1.1' }), new Map(), new Map(), prog);
  assert.equal(d.neighSet.length, 1);
  assert.equal(d.fdbSet.length, 1);
  assert.deepEqual(d.repairs, { neigh: 1, fdb: 1 });
});

test('stale MAC and wrong VTEP are fixed; foreign entries removed; our removals are not repairs', () => {
  const prog = { neigh: new Set(['10.0.0.4', '10.0.0.9']), fdb: new Set(['aa', 'cc']) };
  const d = diffPeers(
    M({ '10.0.0.4': 'aa' }),
    M({ aa: '2.2.2.2' }),
    M({ '10.0.0.4': 'bb', '10.0.0.9': 'cc', '10.0.0.77': 'dd' }),
    F({ aa: ['1.1.1.1'], cc: ['3.3.3.3'], '00:00:00:00:00:00': ['9.9.9.9'] }),
    prog,
  );
  assert.deepEqual(d.neighSet, [{ ip: '10.0.0.4', mac: 'aa' }]);
  assert.deepEqual(d.neighDel.sort(), ['10.0.0.77', '10.0.0.9']);
  assert.deepEqual(d.fdbSet, [{ mac: 'aa', dst: '2.2.2.2' }]);
  assert.deepEqual(d.fdbDel.map((f) => `${f.mac}>${f.dst}`).sort(), ['00:00:00:00:00:00>9.9.9.9', 'aa>1.1.1.1', 'cc>3.3.3.3']);
  // stale neighbour (bb), foreign neighbour (.77); wrong VTEP (aa), foreign all-zeros FDB
  assert.deepEqual(d.repairs, { neigh: 2, fdb: 2 });
});

test('a non-permanent (learned or incomplete) neighbour counts as wrong', () => {
  const d = diffPeers(M({ '10.0.0.4': 'aa' }), new Map(), M({ '10.0.0.4': undefined as unknown as string }), new Map(), none);
  assert.equal(d.neighSet.length, 1);
  assert.equal(d.repairs.neigh, 1);
});
