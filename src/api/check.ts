// Type checks for request bodies: wrong types get a 400 naming the field, never a crash.
import { VxError } from '../core/errors.js';

export class BadRequest extends VxError {
  constructor(message: string) {
    super(message, 400);
  }
}

export function obj(v: unknown, what: string): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new BadRequest(`json: cannot unmarshal ${typeName(v)} into ${what} (an object)`);
  return v as Record<string, unknown>;
}

export function optStr(o: Record<string, unknown>, key: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new BadRequest(`json: cannot unmarshal ${typeName(v)} into field ${key} of type string`);
  return v;
}

export function optBool(o: Record<string, unknown>, key: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new BadRequest(`json: cannot unmarshal ${typeName(v)} into field ${key} of type bool`);
  return v;
}

export function optInt(o: Record<string, unknown>, key: string): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new BadRequest(`json: cannot unmarshal ${typeName(v)} into field ${key} of type integer`);
  return v;
}

export function optStrMap(o: Record<string, unknown>, key: string): Record<string, string> | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  const m = obj(v, `field ${key}`);
  for (const [k, x] of Object.entries(m))
    if (typeof x !== 'string') throw new BadRequest(`json: cannot unmarshal ${typeName(x)} into field ${key}.${k} of type string`);
  return m as Record<string, string>;
}

export function optArr(o: Record<string, unknown>, key: string): unknown[] | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw new BadRequest(`json: cannot unmarshal ${typeName(v)} into field ${key} of type array`);
  return v;
}

export function optStrArr(o: Record<string, unknown>, key: string): string[] | undefined {
  const a = optArr(o, key);
  if (a === undefined) return undefined;
  for (const x of a) if (typeof x !== 'string') throw new BadRequest(`json: cannot unmarshal ${typeName(x)} into field ${key} of type []string`);
  return a as string[];
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** Docker's truthy query values ("1", "true", "True"). */
export function qBool(q: URLSearchParams, key: string): boolean {
  const v = q.get(key);
  return v !== null && ['1', 'true', 'True', 'TRUE'].includes(v);
}

/**
 * Docker's filters query: {"key":{"value":true}} or {"key":["value"]}. A key this endpoint does
 * not implement is refused, as Docker refuses unknown ones: a filter silently ignored lists things
 * the user asked to leave out.
 */
export function parseFilters(text: string | null, allowed: readonly string[]): Record<string, string[] | undefined> {
  if (!text) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new BadRequest('invalid filters: malformed JSON');
  }
  const o = obj(raw, 'filters');
  const out: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(o)) {
    if (!allowed.includes(k)) throw new BadRequest(`invalid filter '${k}'`);
    if (Array.isArray(v)) out[k] = v.map(String);
    else out[k] = Object.keys(obj(v, `filter ${k}`));
  }
  return out;
}

/** Refuses a filter value outside `values`, as Docker does for enumerated filters. */
export function filterValues(f: Record<string, string[] | undefined>, key: string, values: readonly string[]): void {
  for (const v of f[key] ?? []) if (!values.includes(v)) throw new BadRequest(`invalid filter '${key}=${v}'`);
}

/** "key=value" (or "key") against a label map. */
export function labelMatch(labels: Record<string, string>, f: string): boolean {
  const i = f.indexOf('=');
  return i < 0 ? f in labels : labels[f.slice(0, i)] === f.slice(i + 1);
}

/** The `version` an update names (the object's Version.Index): required, so no update skips the sequence check. */
export function requiredVersion(q: URLSearchParams, what: string): number {
  const v = q.get('version') ?? '';
  if (!/^\d+$/.test(v)) throw new BadRequest(`invalid ${what} version '${v}': an update must name the ${what}'s current Version.Index`);
  return Number(v);
}

/** Nothing set: null, false, 0, "", or an object or array holding nothing set. */
export function isUnset(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return true;
  if (Array.isArray(v)) return v.every(isUnset);
  if (typeof v === 'object') return Object.values(v as Record<string, unknown>).every(isUnset);
  return false;
}

/**
 * Never accept and drop: a field of `o` outside `known` is refused unless it is unset or holds the
 * value Docker means by leaving it out (`defaults`), which is what the docker CLI sends back from
 * an inspect. The message names the field by its path.
 */
export function refuseUnknown(o: Record<string, unknown>, where: string, known: readonly string[], defaults: Record<string, unknown> = {}): void {
  for (const [k, v] of Object.entries(o)) {
    if (known.includes(k) || isUnset(v)) continue;
    if (k in defaults && JSON.stringify(defaults[k]) === JSON.stringify(v)) continue;
    throw new BadRequest(`${where}${where ? '.' : ''}${k} is not supported yet: vxswarm refuses it rather than ignore it`);
  }
}

/**
 * Refuses a setting that asks for something other than what vxswarm does: every field of `given`
 * that is set must equal `current` (what GET shows, or Docker's default), recursively.
 */
export function refuseChanged(given: unknown, current: unknown, where: string): void {
  if (isUnset(given) || JSON.stringify(given) === JSON.stringify(current)) return;
  if (given && typeof given === 'object' && !Array.isArray(given) && current && typeof current === 'object' && !Array.isArray(current)) {
    for (const [k, v] of Object.entries(given as Record<string, unknown>)) refuseChanged(v, (current as Record<string, unknown>)[k], `${where}.${k}`);
    return;
  }
  throw new BadRequest(`${where} cannot be set to ${JSON.stringify(given)} yet: vxswarm runs with ${JSON.stringify(current ?? null)}`);
}
