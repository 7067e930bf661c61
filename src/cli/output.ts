// What every command prints through: stdout, repeatable options, and docker's inspect output.
import { VxError } from '../core/errors.js';
import { renderTemplate } from './template.js';

export const out = (s: string): void => void process.stdout.write(s);

/** commander collector for a repeatable option. */
export const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** `inspect` output: the JSON array, or one rendered --format line per item. */
export function inspectOut(items: unknown[], format?: string): void {
  if (format) out(items.map((i) => `${renderTemplate(format, i)}\n`).join(''));
  else out(`${JSON.stringify(items, null, 4)}\n`);
}

/** `-f k=v` flags (repeatable) as the Engine API's filters: key → values. */
export function filterFlags(flags: string[] | undefined): Record<string, string[]> {
  const filters: Record<string, string[]> = {};
  for (const f of flags ?? []) {
    const i = f.indexOf('=');
    if (i <= 0) throw new VxError(`bad format of filter (expected name=value): ${f}`, 400);
    (filters[f.slice(0, i)] ??= []).push(f.slice(i + 1));
  }
  return filters;
}
