// The session of a manager's own node, in-process: the same dispatcher serves it as every other
// node's, so the daemon on a manager takes its assignments, reports and role changes exactly as a
// worker does. Messages go through the event loop both ways, in order, as they would on a stream.
import { EventEmitter } from 'node:events';
import { VxError, errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Dispatcher, SessionHandle, SessionPeer } from '../manager/dispatcher.js';
import type { NodeSession } from './session.js';

const RETRY_MS = 200;

export class LocalSession extends EventEmitter implements NodeSession {
  connected = false;
  private handle: SessionHandle | undefined;
  private peer: SessionPeer | undefined;
  private stopped = true;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly nodeId: string,
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
    const peer: SessionPeer = {
      local: true,
      send: (msg) => setImmediate(() => this.deliver(peer, msg)),
      close: (how) => setImmediate(() => this.lost(peer, how)),
    };
    this.peer = peer;
    try {
      const h = await this.dispatcher.open(this.nodeId, peer);
      if (this.peer !== peer) return h.closed();
      this.handle = h;
    } catch (e) {
      if (this.peer !== peer) return;
      this.peer = undefined;
      if (e instanceof VxError && e.status === 401) this.emit('refused');
      this.log.debug('local session refused', { error: errorMessage(e) });
      this.later();
    }
  }

  private deliver(peer: SessionPeer, msg: Record<string, unknown>): void {
    if (this.peer !== peer || msg.type === 'heartbeat') return;
    if (msg.type === 'welcome') {
      this.connected = true;
      this.emit('connected', msg);
    } else this.emit('message', msg);
  }

  private lost(peer: SessionPeer, how: 'normal' | 'refused'): void {
    if (this.peer !== peer) return;
    this.handle?.closed();
    this.handle = undefined;
    this.peer = undefined;
    if (this.connected) {
      this.connected = false;
      this.emit('disconnected', how === 'refused' ? 'removed from the swarm' : 'session ended by the manager');
    }
    this.later();
  }

  private later(): void {
    if (this.stopped || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.connect();
    }, RETRY_MS);
    this.retry.unref();
  }

  /** One message up the session. */
  send(msg: Record<string, unknown>): void {
    const h = this.handle;
    if (h) setImmediate(() => h.receive(msg));
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    this.handle?.receive({ type: 'bye' });
    this.handle?.closed();
    this.handle = undefined;
    this.peer = undefined;
    this.connected = false;
    return Promise.resolve();
  }
}
