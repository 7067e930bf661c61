// Starting a worker thread from a module next to the caller, both when running the built
// JavaScript and under tsx (tests), where the thread needs tsx's loader registered first.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * `callerUrl` is the caller's import.meta.url; `base` the worker module's name without extension.
 * Unref it after adding its listeners: a 'message' listener refs it again.
 */
export function spawnSibling(callerUrl: string, base: string): Worker {
  const here = fileURLToPath(callerUrl);
  const ts = here.endsWith('.ts');
  const file = path.join(path.dirname(here), `${base}${ts ? '.ts' : '.js'}`);
  const w = ts
    ? new Worker(`import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(pathToFileURL(file).href)}); });`, { eval: true })
    : new Worker(file);
  return w;
}
