// The topology page (`/ui` on the metrics address): the live overlay drawn the way the seed draws
// it, from every node's kernel read-back (topology.ts). The page loads the topology once and then
// follows it over server-sent events: one poll for all viewers, sent only when something changed.
import type http from 'node:http';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { UI_HTML } from './ui-page.js';
import type { ClusterTopology } from './topology.js';

const POLL_MS = 1000;

export class TopologyPage {
  private readonly viewers = new Set<http.ServerResponse>();
  private timer: NodeJS.Timeout | undefined;
  private last = '';
  private polling = false;

  constructor(
    private readonly topology: () => Promise<ClusterTopology>,
    private readonly log: Logger,
  ) {}

  /** Serves the page's routes; false for any other path. */
  handle(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || !path?.startsWith('/ui')) return false;
    if (path === '/ui' || path === '/ui/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' }).end(UI_HTML);
    } else if (path === '/ui/topology') {
      this.topology().then(
        (t) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(t)),
        (e: unknown) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${errorMessage(e)}\n`),
      );
    } else if (path === '/ui/events') {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
      res.write(': follows the topology\n\n');
      if (this.last) res.write(`event: topology\ndata: ${this.last}\n\n`);
      this.viewers.add(res);
      req.on('close', () => {
        this.viewers.delete(res);
        if (!this.viewers.size) this.stop();
      });
      this.start();
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: GET /ui, /ui/topology, /ui/events\n');
    }
    return true;
  }

  close(): void {
    this.stop();
    for (const v of this.viewers) v.end();
    this.viewers.clear();
  }

  private start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.poll(), POLL_MS);
    this.timer.unref();
    void this.poll();
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.last = '';
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const t = await this.topology();
      // Times of reading change every poll: what is compared is what the kernel holds.
      const text = JSON.stringify(t);
      const key = text.replace(/"at":"[^"]*"/g, '');
      if (key === this.last.replace(/"at":"[^"]*"/g, '')) return;
      this.last = text;
      for (const v of this.viewers) v.write(`event: topology\ndata: ${text}\n\n`);
    } catch (e) {
      this.log.warn('topology poll failed', { error: errorMessage(e) });
    } finally {
      this.polling = false;
    }
  }
}
