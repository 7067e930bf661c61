// Runs unit tests always, lab tests when root. Usage: node scripts/run-tests.mjs [unit|lab]
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';

const which = process.argv[2] ?? 'all';
const root = process.getuid?.() === 0;
const files = (dir) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.test.ts'))
    .sort()
    .map((f) => path.join(dir, f));
const list = [];
if (which === 'all' || which === 'unit') list.push(...files('test/unit'));
if (which === 'all' || which === 'lab') {
  if (root) list.push(...files('test/lab'));
  else console.log('# lab tests skipped: they need root (network namespaces)');
}
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=2', ...list], { stdio: 'inherit' });
process.exit(r.status ?? 1);
