// The manager API on 2377: HTTP/2 + JSON over mutual TLS. Joining (fetching the CA, sending
// a CSR with a token) needs no client certificate; every other call does, and each route
// checks the caller's role from its certificate, on this side.
import http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { readBody } from '../../core/body.js';
import { VxError, errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { MAX_BODY, splitHostPort } from '../wire.js';
import { ouRole, type Role } from './ca.js';
import { ForbiddenError, type Manager } from './manager.js';
import type { Orchestrator } from './orchestrator.js';
import type { TaskStatusReport } from './types.js';

interface Caller {
  nodeId: string;
  role: Role;
}

type Handler = (ctx: { caller: Caller | undefined; body: unknown; params: string[]; stream: http2.ServerHttp2Stream }) => Promise<unknown> | unknown;

interface Route {
  method: string;
  re: RegExp;
  auth: 'none' | 'node' | 'manager';
  handler: Handler;
  /** the handler writes its own response (long-lived session) */
  raw?: boolean;
}

export class ManagerServer {
  private server: http2.Http2SecureServer | undefined;
  private readonly routes: Route[];
  private readonly liveStreams = new Set<http2.ServerHttp2Stream>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();

  constructor(
    private readonly manager: Manager,
    private readonly orchestrator: Orchestrator,
    private readonly tls: { certPem: string; keyPem: string },
    private readonly log: Logger,
  ) {
    const m = manager;
    m.setMaxListeners(0);
    this.routes = [
      { method: 'GET', re: /^\/v1\/ca$/, auth: 'none', handler: () => ({ ca: m.ca.certPem }) },
      {
        method: 'POST',
        re: /^\/v1\/join$/,
        auth: 'none',
        handler: ({ body }) => {
          const b = body as Record<string, unknown>;
          return m.join({
            token: str(b.token, 'token'),
            csrPem: str(b.csr, 'csr'),
            hostname: str(b.hostname, 'hostname'),
            addr: str(b.addr, 'addr'),
            availability: (b.availability as never) || undefined,
            engineVersion: typeof b.engineVersion === 'string' ? b.engineVersion : '',
          });
        },
      },
      {
        method: 'POST',
        re: /^\/v1\/renew$/,
        auth: 'node',
        handler: async ({ caller, body }) => ({ cert: await m.renew(caller!.nodeId, str((body as Record<string, unknown>).csr, 'csr')) }),
      },
      { method: 'POST', re: /^\/v1\/session$/, auth: 'node', raw: true, handler: ({ caller, stream }) => this.session(caller!, stream) },
      { method: 'GET', re: /^\/v1\/networks\/([^/]+)$/, auth: 'node', handler: ({ params }) => m.findNetwork(decodeURIComponent(params[0]!)) },
      {
        method: 'POST',
        re: /^\/v1\/attachments$/,
        auth: 'node',
        handler: ({ caller, body }) => {
          const b = body as Record<string, unknown>;
          return m.attach(str(b.network, 'network'), caller!.nodeId, str(b.name, 'name'));
        },
      },
      {
        method: 'DELETE',
        re: /^\/v1\/attachments\/([^/]+)$/,
        auth: 'node',
        handler: ({ caller, params }) => m.detach(decodeURIComponent(params[0]!), caller!.nodeId),
      },
      { method: 'GET', re: /^\/v1\/attachments$/, auth: 'node', handler: ({ caller }) => m.listAttachments({ nodeId: caller!.nodeId }) },
      {
        // A node's answer to a logs request sent over its session.
        method: 'POST',
        re: /^\/v1\/logs\/([^/]+)$/,
        auth: 'node',
        handler: ({ caller, params, body }) => {
          const lines = (body as { lines?: unknown }).lines;
          if (!Array.isArray(lines)) throw new VxError('missing field "lines"', 400);
          m.emit('logs-reply', decodeURIComponent(params[0]!), caller!.nodeId, lines);
          return {};
        },
      },
      {
        method: 'POST',
        re: /^\/v1\/tasks\/([^/]+)\/status$/,
        auth: 'node',
        handler: ({ caller, params, body }) => {
          const b = body as Partial<TaskStatusReport>;
          this.orchestrator.reportStatus(caller!.nodeId, decodeURIComponent(params[0]!), {
            state: str(b.state, 'state') as TaskStatusReport['state'],
            message: typeof b.message === 'string' ? b.message : '',
            ...(typeof b.err === 'string' ? { err: b.err } : {}),
            ...(typeof b.containerId === 'string' ? { containerId: b.containerId } : {}),
            ...(typeof b.exitCode === 'number' ? { exitCode: b.exitCode } : {}),
          });
          return {};
        },
      },
      // Cluster changes: managers only.
      { method: 'GET', re: /^\/v1\/nodes$/, auth: 'manager', handler: () => m.listNodes() },
      {
        method: 'POST',
        re: /^\/v1\/networks$/,
        auth: 'manager',
        handler: ({ body }) => m.createNetwork(body as never),
      },
    ];
  }

  async listen(addr: string): Promise<void> {
    const { host, port } = splitHostPort(addr);
    const c = this.manager.cluster();
    const server = http2.createSecureServer({
      key: this.tls.keyPem,
      cert: this.tls.certPem,
      ca: c.caCertPem,
      requestCert: true,
      // Joiners have no certificate yet; routes that need one check `authorized` themselves.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    });
    server.on('stream', (stream, headers) => void this.dispatch(stream, headers));
    server.on('session', (sess) => {
      this.sessions.add(sess);
      sess.once('close', () => this.sessions.delete(sess));
    });
    server.on('sessionError', (e) => this.log.debug('manager api session error', { error: errorMessage(e) }));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host === '0.0.0.0' ? undefined : host, () => resolve());
    });
    this.server = server;
  }

  /** Stops listening and drops every connection (agents reconnect to whoever serves next). */
  async close(): Promise<void> {
    for (const s of this.liveStreams) s.close();
    for (const s of this.sessions) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  private caller(stream: http2.ServerHttp2Stream): Caller | undefined {
    const sock = stream.session?.socket as TLSSocket | undefined;
    if (!sock?.authorized) return undefined;
    const subject = sock.getPeerCertificate()?.subject;
    const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? undefined : v);
    const nodeId = one(subject?.CN);
    const role = ouRole(one(subject?.OU));
    if (!nodeId || !role || one(subject?.O) !== this.manager.cluster().id) return undefined;
    // A removed node keeps a valid certificate; the store says it is no longer a member.
    const rec = this.manager.store.getNode(nodeId);
    if (!rec || rec.role !== role) return undefined;
    return { nodeId, role };
  }

  private async dispatch(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    const method = String(headers[':method']);
    const path = String(headers[':path']).split('?')[0]!;
    try {
      const route = this.routes.find((r) => r.method === method && r.re.test(path));
      if (!route) throw new VxError(`no route ${method} ${path}`, 404);
      const caller = this.caller(stream);
      if (route.auth !== 'none' && !caller) throw new VxError('a valid node certificate of this swarm is required', 401);
      if (route.auth === 'manager' && caller?.role !== 'manager')
        throw new ForbiddenError("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state.");
      const params = route.re.exec(path)!.slice(1);
      if (route.raw) {
        await route.handler({ caller, body: undefined, params, stream });
        return;
      }
      const body = method === 'POST' ? await readJson(stream) : undefined;
      const result = await route.handler({ caller, body, params, stream });
      respond(stream, 200, result ?? {});
    } catch (e) {
      const status = e instanceof VxError ? e.status : 500;
      if (status >= 500) this.log.error('manager api error', { path, error: errorMessage(e) });
      respond(stream, status, { message: errorMessage(e) });
    }
  }

  /** A node's session: heartbeats come up as lines; closing it (or the daemon dying) marks the node down. */
  private session(caller: Caller, stream: http2.ServerHttp2Stream): void {
    const node = this.manager.sessionOpened(caller.nodeId);
    this.liveStreams.add(stream);
    stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' });
    const send = (msg: unknown): void => {
      if (!stream.closed && !stream.destroyed) stream.write(`${JSON.stringify(msg)}\n`);
    };
    send({ type: 'welcome', node, managers: [this.manager.store.getNode(this.manager.selfId)?.addr], gossipKeys: this.manager.gossipKeys() });
    const onKeys = (keys: string[]): void => send({ type: 'gossip-keys', gossipKeys: keys });
    // Dispatcher: the node's complete assignment set, sent whenever it changes.
    let lastSet = '';
    const sendAssignments = (): void => {
      const tasks = this.orchestrator.assignments(caller.nodeId);
      const key = JSON.stringify(tasks.map((t) => [t.id, t.version]));
      if (key === lastSet) return;
      lastSet = key;
      const netIds = [...new Set(tasks.flatMap((t) => t.networks.map((n) => n.networkId)))];
      send({ type: 'assignments', tasks, networks: netIds.map((id) => this.manager.store.getNetwork(id)).filter((n) => n) });
    };
    this.manager.on('tasks-changed', sendAssignments);
    const onLogs = (nodeId: string, req: unknown): void => {
      if (nodeId === caller.nodeId) send({ type: 'logs-request', ...(req as object) });
    };
    this.manager.on('logs-request', onLogs);
    stream.once('close', () => this.manager.off('logs-request', onLogs));
    stream.once('close', () => this.manager.off('tasks-changed', sendAssignments));
    setImmediate(sendAssignments);
    this.manager.on('gossip-keys', onKeys);
    stream.once('close', () => this.manager.off('gossip-keys', onKeys));
    stream.on('data', () => this.manager.heartbeat(caller.nodeId));
    let closed = false;
    const done = (): void => {
      if (closed) return;
      closed = true;
      this.liveStreams.delete(stream);
      this.manager.sessionClosed(caller.nodeId);
    };
    stream.on('close', done);
    stream.on('error', done);
    const onRemoved = (): void => {
      if (!this.manager.store.getNode(caller.nodeId)) stream.close(http2.constants.NGHTTP2_CANCEL);
    };
    this.manager.on('node-removed', onRemoved);
    stream.once('close', () => this.manager.off('node-removed', onRemoved));
  }
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new VxError(`missing or invalid field "${what}"`, 400);
  return v;
}

async function readJson(stream: http2.ServerHttp2Stream): Promise<unknown> {
  const body = await readBody(stream as AsyncIterable<Buffer>, MAX_BODY);
  if (body.length === 0) return {};
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new VxError('malformed JSON body', 400);
  }
}

function respond(stream: http2.ServerHttp2Stream, status: number, body: unknown): void {
  if (stream.destroyed || stream.closed) return;
  if (!stream.headersSent) stream.respond({ ':status': status, 'content-type': 'application/json' });
  stream.end(JSON.stringify(body));
}
