// npm run bench -- <name>: runs one benchmark; each prints JSON lines, the last a summary.
const benches: Record<string, () => Promise<void>> = {
  dataplane: async () => (await import('./dataplane.js')).run(),
  control: async () => (await import('./control.js')).run(),
  gossip: async () => (await import('./gossip.js')).run(),
  services: async () => (await import('./services.js')).run(),
  demo: async () => (await import('./demo.js')).run(),
  managers: async () => (await import('./managers.js')).run(),
  lb: async () => (await import('./lb.js')).run(),
  mesh: async () => (await import('./mesh.js')).run(),
  encrypted: async () => (await import('./encrypted.js')).run(),
};

const name = process.argv[2];
const fn = name ? benches[name] : undefined;
if (!fn) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(benches).join('|')}>\n`);
  process.exit(2);
}
await fn();
