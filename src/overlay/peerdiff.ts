// Pure diff of desired peer entries against what the kernel reports for one VTEP.
// "Repairs" are differences we did not cause: entries that vanished or changed behind
// our back, or foreign entries. Entries we never programmed yet are plain "adds".

export interface NeighEntry {
  ip: string;
  mac: string;
}
export interface FdbEntry {
  mac: string;
  dst: string;
}

export interface PeerActions {
  neighSet: NeighEntry[];
  neighDel: string[];
  fdbSet: FdbEntry[];
  fdbDel: FdbEntry[];
  /** entries we had programmed that the kernel lost or changed, plus foreign ones */
  repairs: { neigh: number; fdb: number };
}

export function diffPeers(
  desiredNeigh: ReadonlyMap<string, string>,
  desiredFdb: ReadonlyMap<string, string>,
  actualNeigh: ReadonlyMap<string, string | undefined>,
  actualFdb: ReadonlyMap<string, string[]>,
  programmed: { neigh: ReadonlySet<string>; fdb: ReadonlySet<string> },
): PeerActions {
  const a: PeerActions = { neighSet: [], neighDel: [], fdbSet: [], fdbDel: [], repairs: { neigh: 0, fdb: 0 } };
  for (const [ip, mac] of desiredNeigh) {
    const have = actualNeigh.get(ip);
    if (have === mac) continue;
    a.neighSet.push({ ip, mac });
    if (actualNeigh.has(ip) || programmed.neigh.has(ip)) a.repairs.neigh++;
  }
  for (const ip of actualNeigh.keys()) {
    if (desiredNeigh.has(ip)) continue;
    a.neighDel.push(ip);
    if (!programmed.neigh.has(ip)) a.repairs.neigh++;
  }
  for (const [mac, dst] of desiredFdb) {
    const have = actualFdb.get(mac) ?? [];
    if (have.length === 1 && have[0] === dst) continue;
    for (const d of have) if (d !== dst) a.fdbDel.push({ mac, dst: d });
    if (!have.includes(dst)) a.fdbSet.push({ mac, dst });
    if (have.length > 0 || programmed.fdb.has(mac)) a.repairs.fdb++;
  }
  for (const [mac, dsts] of actualFdb) {
    if (desiredFdb.has(mac)) continue;
    for (const dst of dsts) a.fdbDel.push({ mac, dst });
    if (!programmed.fdb.has(mac)) a.repairs.fdb++;
  }
  return a;
}
