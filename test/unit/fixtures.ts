// Records the unit tests build by hand, with what each test needs changed.
import type { NodeRecord } from '../../src/cluster/manager/types.js';

/** A ready worker with nothing set but its ID (and hostname, the same). */
export const nodeRecord = (id: string, o: Partial<NodeRecord> = {}): NodeRecord => ({
  id,
  hostname: id,
  role: 'worker',
  availability: 'active',
  addr: '',
  state: 'ready',
  message: '',
  engineVersion: '',
  labels: {},
  version: 1,
  createdAt: '',
  updatedAt: '',
  ...o,
});
