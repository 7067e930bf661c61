// Safe removal of a namespace that may hold VXLAN devices: the VTEPs go first, because
// a VNI stays taken (EEXIST on re-create) while a dying namespace is torn down async.
import { deleteNetns, netnsExists } from './netns.js';
import { Rtnl } from './rtnl.js';

export async function destroyNetns(name: string, sock?: Rtnl): Promise<void> {
  if (netnsExists(name)) {
    const own = sock ?? Rtnl.open(name);
    try {
      for (const l of await own.getLinks()) if (l.kind === 'vxlan') await own.deleteLink(l.index);
    } finally {
      own.close();
    }
  } else {
    sock?.close();
  }
  deleteNetns(name);
}
