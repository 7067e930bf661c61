// Swarm configs (docker config create/ls/inspect/rm/update): named data kept in the store, given
// to the tasks that name it as read-only files. Docker's rules: a name as a service's, data
// larger than 0 and under 1000 KiB, only the labels may change, none removed while in use.
import { ConflictError, InvalidArgumentError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import { findByRef } from './lookup.js';
import type { Store } from './store.js';
import type { ConfigRecord, ConfigRef, ServiceSpec } from './types.js';

const NAME_RE = /^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$/;
export const MAX_CONFIG_BYTES = 1000 * 1024;

export interface ConfigCreate {
  name: string;
  labels: Record<string, string>;
  /** base64 */
  data: string;
}

export function createConfigTx(store: Store, req: ConfigCreate): ConfigRecord {
  if (!req.name || req.name.length > 64 || !NAME_RE.test(req.name))
    throw new InvalidArgumentError(`invalid config name "${req.name}": 1-64 characters, [a-zA-Z0-9][a-zA-Z0-9-_.]*[a-zA-Z0-9]`);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(req.data)) throw new InvalidArgumentError('config data must be base64');
  const size = Buffer.from(req.data, 'base64').length;
  if (size === 0 || size >= MAX_CONFIG_BYTES) throw new InvalidArgumentError(`config data must be larger than 0 and less than ${MAX_CONFIG_BYTES / 1024}KB`);
  if (store.listConfigs().some((c) => c.name === req.name)) throw new ConflictError(`rpc error: code = AlreadyExists desc = config ${req.name} already exists`);
  const t = new Date().toISOString();
  const rec: ConfigRecord = { id: newId(), name: req.name, labels: { ...req.labels }, data: req.data, version: store.bump(), createdAt: t, updatedAt: t };
  store.putConfig(rec);
  return rec;
}

export function findConfig(store: Store, ref: string): ConfigRecord {
  return findByRef(store.listConfigs(), ref, (c) => c.name, 'config');
}

export function removeConfigTx(store: Store, ref: string): ConfigRecord {
  const c = findConfig(store, ref);
  const users = store.listServices().filter((s) => s.spec.configs?.some((x) => x.configId === c.id));
  if (users.length) throw new InvalidArgumentError(`config '${c.name}' is in use by the following service: ${users.map((s) => s.spec.name).join(', ')}`);
  store.deleteConfig(c.id);
  store.bump();
  return c;
}

/** Only the labels change (Docker refuses any other update). */
export function updateConfigTx(store: Store, ref: string, version: number | undefined, next: ConfigCreate): ConfigRecord {
  const c = findConfig(store, ref);
  if (version !== undefined && version !== c.version)
    throw new ConflictError(`update out of sequence: config ${c.name} is at version ${c.version}, not ${version}`);
  if (next.name !== c.name || (next.data !== '' && next.data !== c.data)) throw new InvalidArgumentError('only updates to Labels are allowed');
  const rec: ConfigRecord = { ...c, labels: { ...next.labels }, version: store.bump(), updatedAt: new Date().toISOString() };
  store.putConfig(rec);
  return rec;
}

/** A service's configs, each resolved to the stored one (by ID, else name) with its file's path: each target once. */
export function resolveConfigRefs(store: Store, spec: ServiceSpec): ConfigRef[] | undefined {
  if (!spec.configs?.length) return undefined;
  const targets = new Set<string>();
  return spec.configs.map((r) => {
    const c = (r.configId && store.getConfig(r.configId)) || store.listConfigs().find((x) => x.name === r.configName);
    if (!c) throw new InvalidArgumentError(`config not found: ${r.configId || r.configName}`);
    const target = r.target ? (r.target.startsWith('/') ? r.target : `/${r.target}`) : `/${c.name}`;
    if (targets.has(target)) throw new InvalidArgumentError(`config target ${target} is used twice`);
    targets.add(target);
    return { ...r, configId: c.id, configName: c.name, target };
  });
}
