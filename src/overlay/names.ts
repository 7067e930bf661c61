// Names of the kernel objects the overlay makes. The prefix keeps two daemons (or two
// test runs) on one machine apart, and lets a restart find what a crashed run left.
import { createHash } from 'node:crypto';

export const sandboxName = (prefix: string, networkId: string): string => `${prefix}ov-${networkId.slice(0, 12)}`;
export const sandboxPrefix = (prefix: string): string => `${prefix}ov-`;
export const bridgeName = (subnetIndex: number): string => `br${subnetIndex}`;
export const vxlanName = (subnetIndex: number): string => `vxlan${subnetIndex}`;
/** Sandbox end of an endpoint's veth: stable for an endpoint ID, so a restart can find it. */
export const vethName = (endpointId: string): string => `veth${createHash('sha256').update(endpointId).digest('hex').slice(0, 8)}`;
