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

/** Docker's filters query: {"key":{"value":true}} or {"key":["value"]}. */
export function parseFilters(text: string | null): Record<string, string[] | undefined> {
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
    if (Array.isArray(v)) out[k] = v.map(String);
    else out[k] = Object.keys(obj(v, `filter ${k}`));
  }
  return out;
}
