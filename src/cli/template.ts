// A subset of Go's text/template, enough for docker's --format: field paths ({{.A.B}}),
// {{json .X}}, {{range .X}}…{{end}}, {{if .X}}…{{else}}…{{end}}, {{index .M "k"}},
// {{join .L ","}}, {{upper}}/{{lower}}, {{println}}, string literals, and "$" for the root.
import { InvalidArgumentError } from '../core/errors.js';

type Node =
  | { t: 'text'; v: string }
  | { t: 'expr'; e: string[] }
  | { t: 'range'; e: string[]; body: Node[]; alt: Node[] }
  | { t: 'if'; e: string[]; body: Node[]; alt: Node[] };

function tokenize(expr: string): string[] {
  const out: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|`[^`]*`|[^\s"`]+)/gy;
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(expr)) && m[1]) {
    out.push(m[1]);
    end = re.lastIndex;
  }
  if (expr.slice(end).trim()) throw new InvalidArgumentError(`template: cannot parse "${expr}"`);
  return out;
}

export function parseTemplate(src: string): Node[] {
  const parts = src.split(/(\{\{-?\s*[\s\S]*?\s*-?\}\})/);
  const root: Node[] = [];
  const stack: Array<{ node: Node & { body: Node[]; alt: Node[] }; inElse: boolean }> = [];
  const push = (n: Node): void => {
    const top = stack[stack.length - 1];
    if (!top) root.push(n);
    else (top.inElse ? top.node.alt : top.node.body).push(n);
  };
  for (const p of parts) {
    if (!p) continue;
    const m = /^\{\{-?\s*([\s\S]*?)\s*-?\}\}$/.exec(p);
    if (!m) {
      push({ t: 'text', v: p });
      continue;
    }
    const toks = tokenize(m[1]!);
    const head = toks[0];
    if (head === 'range' || head === 'if') {
      const n = { t: head, e: toks.slice(1), body: [], alt: [] } as Node & { body: Node[]; alt: Node[] };
      push(n);
      stack.push({ node: n, inElse: false });
    } else if (head === 'else') {
      const top = stack[stack.length - 1];
      if (!top) throw new InvalidArgumentError('template: unexpected {{else}}');
      top.inElse = true;
    } else if (head === 'end') {
      if (!stack.pop()) throw new InvalidArgumentError('template: unexpected {{end}}');
    } else if (toks.length) push({ t: 'expr', e: toks });
  }
  if (stack.length) throw new InvalidArgumentError('template: unexpected EOF (missing {{end}})');
  return root;
}

function lookup(dot: unknown, root: unknown, path: string): unknown {
  if (path === '.') return dot;
  let cur: unknown = path.startsWith('$') ? root : dot;
  const fields = path.replace(/^\$/, '').split('.').filter(Boolean);
  for (const f of fields) {
    if (cur === null || cur === undefined || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[f];
  }
  return cur;
}

function evalArg(tok: string, dot: unknown, root: unknown): unknown {
  if (tok.startsWith('"')) return JSON.parse(tok) as string;
  if (tok.startsWith('`')) return tok.slice(1, -1);
  if (/^-?\d+$/.test(tok)) return Number(tok);
  if (tok.startsWith('.') || tok.startsWith('$')) return lookup(dot, root, tok);
  throw new InvalidArgumentError(`template: function "${tok}" not defined`);
}

function evalExpr(toks: string[], dot: unknown, root: unknown): unknown {
  const [f, ...args] = toks;
  const a = (): unknown[] => args.map((x) => evalArg(x, dot, root));
  switch (f) {
    case 'json':
      return JSON.stringify(a()[0] ?? null);
    case 'index': {
      const [m, k] = a();
      return m && typeof m === 'object' ? (m as Record<string, unknown>)[String(k)] : undefined;
    }
    case 'join': {
      const [l, sep] = a();
      return Array.isArray(l) ? l.join(String(sep)) : '';
    }
    case 'upper':
      return String(a()[0] ?? '').toUpperCase();
    case 'lower':
      return String(a()[0] ?? '').toLowerCase();
    case 'println':
      return `${a().map(str).join(' ')}\n`;
    case 'len': {
      const v = a()[0];
      return Array.isArray(v) ? v.length : v && typeof v === 'object' ? Object.keys(v).length : String(v ?? '').length;
    }
    default:
      if (args.length) throw new InvalidArgumentError(`template: function "${f}" not defined`);
      return evalArg(f!, dot, root);
  }
}

function truthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (v && typeof v === 'object') return Object.keys(v).length > 0;
  return !!v;
}

function str(v: unknown): string {
  if (v === undefined || v === null) return '<no value>';
  if (typeof v === 'object')
    return Array.isArray(v)
      ? `[${v.map(str).join(' ')}]`
      : `map[${Object.entries(v)
          .map(([k, x]) => `${k}:${str(x)}`)
          .join(' ')}]`;
  return String(v);
}

function run(nodes: Node[], dot: unknown, root: unknown): string {
  let out = '';
  for (const n of nodes) {
    if (n.t === 'text') out += n.v;
    else if (n.t === 'expr') out += str(evalExpr(n.e, dot, root));
    else if (n.t === 'if') out += run(truthy(evalExpr(n.e, dot, root)) ? n.body : n.alt, dot, root);
    else {
      const v = evalExpr(n.e, dot, root);
      const items = Array.isArray(v) ? v : v && typeof v === 'object' ? Object.values(v) : [];
      out += items.length ? items.map((x) => run(n.body, x, root)).join('') : run(n.alt, dot, root);
    }
  }
  return out;
}

export function renderTemplate(src: string, data: unknown): string {
  return run(parseTemplate(src.replace(/\\t/g, '\t').replace(/\\n/g, '\n')), data, data);
}

/** Go tabwriter with docker's settings (minwidth 10, padding 3): aligned columns, last one unpadded. */
export function tabulate(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => i < r.length - 1 && (widths[i] = Math.max(widths[i] ?? 0, c.length + 3, 10)));
  return rows
    .map(
      (r) =>
        r
          .map((c, i) => (i < r.length - 1 ? c.padEnd(widths[i]!) : c))
          .join('')
          .trimEnd() + '\n',
    )
    .join('');
}

/**
 * docker's --format for list commands: "table …" prints a header row from the field names;
 * a plain template prints one line per item.
 */
export function formatList(format: string, items: Array<Record<string, unknown>>, headers: Record<string, string>): string {
  const table = format.startsWith('table');
  const tpl = table ? format.replace(/^table\s*/, '') : format;
  if (!table) return items.map((i) => `${renderTemplate(tpl, i)}\n`).join('');
  const header = renderTemplate(tpl, new Proxy({}, { get: (_t, k: string) => headers[k] ?? k.replace(/([a-z])([A-Z])/g, '$1 $2').toUpperCase() }));
  const rows = [header, ...items.map((i) => renderTemplate(tpl, i))].map((l) => l.split('\t'));
  return tabulate(rows);
}
