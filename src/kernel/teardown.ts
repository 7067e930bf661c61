// Safe removal of a namespace. Its devices are deleted first, synchronously: a VNI stays
// taken (EEXIST on re-create) while a dying namespace is torn down in the background,
// and a veth's far end in a container would otherwise linger until that teardown ends.
import { deleteNetns, netnsExists } from './netns.js';
import { Rtnl } from './rtnl.js';

export async function destroyNetns(name: string, sock?: Rtnl): Promise<void> {
  if (netnsExists(name)) {
    const own = sock ?? Rtnl.open(name);
    try {
      const links = (await own.getLinks()).filter((l) => l.name !== 'lo');
      const order = (k?: string): number => (k === 'vxlan' ? 0 : k === 'bridge' ? 2 : 1);
      links.sort((a, b) => order(a.kind) - order(b.kind));
      for (const l of links) await own.deleteLink(l.index);
    } finally {
      own.close();
    }
  } else {
    sock?.close();
  }
  deleteNetns(name);
}
