// What every command prints through: stdout, repeatable options, and docker's inspect output.
import { renderTemplate } from './template.js';

export const out = (s: string): void => void process.stdout.write(s);

/** commander collector for a repeatable option. */
export const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** `inspect` output: the JSON array, or one rendered --format line per item. */
export function inspectOut(items: unknown[], format?: string): void {
  if (format) out(items.map((i) => `${renderTemplate(format, i)}\n`).join(''));
  else out(`${JSON.stringify(items, null, 4)}\n`);
}
