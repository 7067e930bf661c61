// A node's session with a manager (any of them): a long-lived HTTP/2 stream carrying heartbeats
// and reports up, assignments down. If the stream breaks, it reconnects with backoff, to the
// next manager when this one is unreachable; the node is marked down when the stream closes
// or heartbeats stop.
import { EventEmitter } from 'node:events';
import type http2 from 'node:http2';
import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { HEARTBEAT_MISSES, HEARTBEAT_PERIOD_MS } from '../manager/manager.js';
import type { ManagerClient } from './client.js';

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 2000;
const WELCOME_TIMEOUT_MS = 5000;

/**
 * What the daemon holds: a session with a manager, remote (AgentSession) or its own manager's
 * (LocalSession). Events: 'connected' (the welcome), 'message', 'disconnected', 'refused'.
 */
export interface NodeSession extends EventEmitter {
  readonly connected: boolean;
  start(): void;
  /** ends the session with a goodbye (a planned stop); settles once it is said */
  stop(): Promise<void>;
  send(msg: Record<string, unknown>): void;
}

export class AgentSession extends EventEmitter implements NodeSession {
  private stream: http2.ClientHttp2Stream | undefined;
  private beat: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private backoff = BACKOFF_MIN_MS;
  private stopped = false;
  connected = false;

  constructor(
    private readonly client: ManagerClient,
    private readonly log: Logger,
  ) {
    super();
  }

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    try {
      const s = await this.client.open();
      const stream = s.request({ ':method': 'POST', ':path': '/v1/session', 'content-type': 'application/x-ndjson' });
      this.stream = stream;
      let buf = '';
      stream.on('response', (h) => {
        const status = Number(h[':status']);
        if (status === 200) return;
        this.log.warn('manager refused session', { manager: this.client.addr, status });
        // 401: our certificate is no longer a member's (the node was removed from the swarm).
        if (status === 401) this.emit('refused');
        // This manager cannot serve sessions now (starting, or its etcd without quorum): the next.
        else this.client.follow(undefined);
        stream.close();
      });
      let heard = Date.now();
      // The manager says its period with every beat (swarm update --dispatcher-heartbeat).
      let period = HEARTBEAT_PERIOD_MS;
      stream.on('data', (c: Buffer) => {
        heard = Date.now();
        buf += c.toString('utf8');
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          try {
            const msg = JSON.parse(line) as { type: string; periodMs?: number };
            if (msg.type === 'heartbeat') {
              if (typeof msg.periodMs === 'number' && msg.periodMs > 0) period = msg.periodMs;
              continue;
            }
            if (msg.type === 'welcome') {
              this.connected = true;
              this.backoff = BACKOFF_MIN_MS;
              this.emit('connected', msg);
            } else this.emit('message', msg);
          } catch {
            this.log.warn('bad session message', { line });
          }
        }
      });
      stream.on('close', () => this.lost('stream closed'));
      stream.on('error', (e) => this.lost(errorMessage(e)));
      this.beat = setInterval(() => {
        // The manager beats too: silence means it or the path to it is gone (a partitioned or
        // powered-off host closes nothing), so go to another.
        if (this.connected && Date.now() - heard > period * HEARTBEAT_MISSES) {
          this.log.warn('no heartbeat from the manager: reconnecting', { manager: this.client.addr });
          this.client.follow(undefined);
          stream.close();
          return;
        }
        // Never welcomed (a session the manager was closing, a manager too busy to answer): try again.
        if (!this.connected && Date.now() - heard > WELCOME_TIMEOUT_MS) {
          this.log.warn('no answer to the session request: reconnecting', { manager: this.client.addr });
          this.client.reset();
          stream.close();
          return;
        }
        if (!stream.closed && !stream.destroyed) stream.write('{}\n');
      }, HEARTBEAT_PERIOD_MS);
      this.beat.unref();
    } catch (e) {
      // Unreachable: the next attempt tries the next manager.
      this.client.follow(undefined);
      this.lost(errorMessage(e));
    }
  }

  private lost(why: string): void {
    if (this.beat) clearInterval(this.beat);
    this.beat = undefined;
    this.stream = undefined;
    if (this.connected) {
      this.connected = false;
      this.emit('disconnected', why);
      this.log.warn('manager session lost', { why });
    }
    if (this.stopped || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.connect();
    }, this.backoff);
    this.backoff = Math.min(BACKOFF_MAX_MS, this.backoff * 2);
  }

  /** Sends one message up the session (the node's state when it starts). */
  send(msg: Record<string, unknown>): void {
    const st = this.stream;
    if (st && !st.closed && !st.destroyed) st.write(`${JSON.stringify(msg)}\n`);
  }

  /**
   * Ends the session. It says goodbye first (a planned stop: the node is back soon or never, and
   * its manager gives it a grace before it counts as down, as a dead daemon's closed socket does not).
   */
  stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.beat) clearInterval(this.beat);
    const st = this.stream;
    this.stream = undefined;
    if (!st || st.closed || st.destroyed) {
      st?.close();
      return Promise.resolve();
    }
    // Settles when the manager has ended the stream on the goodbye, or after a second (it may be gone).
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        st.close();
        resolve();
      }, 1000);
      t.unref();
      st.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      st.end(`${JSON.stringify({ type: 'bye' })}\n`);
    });
  }
}
