// The manager API on 2377: HTTP/2 + JSON over mutual TLS. Joining (fetching the CA, sending
// a CSR with a token) needs no client certificate; every other call does, and each route
// checks the caller's role from its certificate, on this side. A follower answers leader-only
// calls with 503 and the leader's address, which clients follow. (etcd's own traffic between
// managers has its own port, 2380.)
import http from 'node:http';
import http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { readBody } from '../../core/body.js';
import { VxError, errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { Mutex } from '../../core/mutex.js';
import { LEADER_HEADER } from '../agent/client.js';
import { LEADER_ENGINE_PATH, MAX_BODY, splitHostPort } from '../wire.js';
import { ouRole, type Role } from './ca.js';
import { NotLeaderError, type ControlPlane } from './control.js';
import { ForbiddenError, HEARTBEAT_PERIOD_MS } from './manager.js';
import type { NodeReport, TaskStatusReport } from './types.js';

interface Caller {
  nodeId: string;
  role: Role;
}

type Handler = (ctx: {
  caller: Caller | undefined;
  body: unknown;
  params: string[];
  stream: http2.ServerHttp2Stream;
  headers: http2.IncomingHttpHeaders;
}) => Promise<unknown> | unknown;

interface Route {
  method: string;
  re: RegExp;
  auth: 'none' | 'node' | 'manager';
  handler: Handler;
  /** the handler writes its own response (long-lived session) */
  raw?: boolean;
  /** body limit, if not MAX_BODY */
  maxBody?: number;
}

export class ManagerServer {
  private server: http2.Http2SecureServer | undefined;
  private readonly routes: Route[];
  private readonly liveStreams = new Set<http2.ServerHttp2Stream>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();

  /** joins one at a time: a manager's join adds an etcd member, and etcd adds one at a time */
  private readonly joins = new Mutex();

  constructor(
    private readonly ctl: ControlPlane,
    private readonly tls: { caPem: string; certPem: string; keyPem: string },
    private readonly log: Logger,
    /** the local Engine API socket, for calls a follower manager forwards here */
    private readonly engineSocket: string | undefined,
  ) {
    const lead = (): NonNullable<ControlPlane['leading']> => ctl.mustLead();
    // What any manager answers from its own store (writes go straight to etcd).
    const api = (): ControlPlane['api'] => ctl.api;
    this.routes = [
      { method: 'GET', re: /^\/v1\/ca$/, auth: 'none', handler: () => ({ ca: this.tls.caPem }) },
      // A manager node (joined or promoted, holding its manager certificate) asks to become an
      // etcd member: it is added as a learner and told the cluster to start its etcd in.
      {
        method: 'POST',
        re: /^\/v1\/etcd\/join$/,
        auth: 'manager',
        handler: async ({ caller }) => {
          lead();
          return { initialCluster: await ctl.addMember(caller!.nodeId), crl: await ctl.currentCrl() };
        },
      },
      { method: 'POST', re: /^\/v1\/engine$/, auth: 'manager', raw: true, handler: ({ stream, headers }) => this.engine(stream, headers) },
      {
        method: 'POST',
        re: /^\/v1\/join$/,
        auth: 'none',
        handler: ({ body }) => {
          const b = body as Record<string, unknown>;
          const req = {
            token: str(b.token, 'token'),
            csrPem: str(b.csr, 'csr'),
            hostname: str(b.hostname, 'hostname'),
            addr: str(b.addr, 'addr'),
            availability: (b.availability as never) || undefined,
            engineVersion: typeof b.engineVersion === 'string' ? b.engineVersion : '',
            ...(typeof b.managerPort === 'number' ? { managerPort: b.managerPort } : {}),
          };
          return this.joins.lock(() => lead().manager.join(req));
        },
      },
      {
        method: 'POST',
        re: /^\/v1\/renew$/,
        auth: 'node',
        handler: async ({ caller, body }) => ({ cert: await api().manager.renew(caller!.nodeId, str((body as Record<string, unknown>).csr, 'csr')) }),
      },
      { method: 'POST', re: /^\/v1\/session$/, auth: 'node', raw: true, handler: ({ caller, stream }) => this.session(caller!, stream) },
      { method: 'GET', re: /^\/v1\/networks\/([^/]+)$/, auth: 'node', handler: ({ params }) => api().manager.findNetwork(decodeURIComponent(params[0]!)) },
      {
        method: 'POST',
        re: /^\/v1\/attachments$/,
        auth: 'node',
        handler: ({ caller, body }) => {
          const b = body as Record<string, unknown>;
          return api().manager.attachLocal(str(b.network, 'network'), caller!.nodeId, str(b.name, 'name'));
        },
      },
      {
        method: 'DELETE',
        re: /^\/v1\/attachments\/([^/]+)$/,
        auth: 'node',
        handler: ({ caller, params }) => api().manager.detach(decodeURIComponent(params[0]!), caller!.nodeId),
      },
      { method: 'GET', re: /^\/v1\/attachments$/, auth: 'node', handler: ({ caller }) => api().manager.listAttachments({ nodeId: caller!.nodeId }) },
      {
        // A node's answer to a logs request sent over its session.
        method: 'POST',
        re: /^\/v1\/logs\/([^/]+)$/,
        auth: 'node',
        handler: ({ caller, params, body }) => {
          const lines = (body as { lines?: unknown }).lines;
          if (!Array.isArray(lines)) throw new VxError('missing field "lines"', 400);
          lead().manager.emit('logs-reply', decodeURIComponent(params[0]!), caller!.nodeId, lines);
          return {};
        },
      },
      {
        method: 'POST',
        re: /^\/v1\/tasks\/([^/]+)\/status$/,
        auth: 'node',
        handler: async ({ caller, params, body }) => {
          const b = body as Partial<TaskStatusReport>;
          await api().orchestrator.reportStatus(caller!.nodeId, decodeURIComponent(params[0]!), {
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
      { method: 'GET', re: /^\/v1\/nodes$/, auth: 'manager', handler: () => api().manager.listNodes() },
      {
        method: 'POST',
        re: /^\/v1\/networks$/,
        auth: 'manager',
        handler: ({ body }) => api().manager.createNetwork(body as never),
      },
    ];
  }

  async listen(addr: string): Promise<void> {
    const { host, port } = splitHostPort(addr);
    const server = http2.createSecureServer({
      key: this.tls.keyPem,
      cert: this.tls.certPem,
      ca: this.tls.caPem,
      requestCert: true,
      // Joiners have no certificate yet; routes that need one check `authorized` themselves.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      // a node reporting hundreds of task starts has many streams open at once; past the 10 MB
      // default node answers ENHANCE_YOUR_CALM and drops the node's whole session
      maxSessionMemory: 64,
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

  /** Ends every agent session (this manager stopped leading: they go to the new leader). */
  dropSessions(): void {
    for (const s of this.liveStreams) s.close();
  }

  /** Stops listening and drops every connection (agents reconnect to whoever serves next). */
  async close(): Promise<void> {
    this.dropSessions();
    for (const s of this.sessions) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  /** Who calls: the certificate, and the store still listing the node in that role. */
  private caller(stream: http2.ServerHttp2Stream): Caller | undefined {
    const sock = stream.session?.socket as TLSSocket | undefined;
    if (!sock?.authorized) return undefined;
    const subject = sock.getPeerCertificate()?.subject;
    const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? undefined : v);
    const nodeId = one(subject?.CN);
    const role = ouRole(one(subject?.OU));
    if (!nodeId || !role || one(subject?.O) !== this.ctl.clusterId) return undefined;
    // A removed node keeps a valid certificate; the store says it is no longer a member.
    const rec = this.ctl.store.getNode(nodeId);
    if (!rec) return undefined;
    // Manager rights need both the certificate and the store: a node just promoted or demoted
    // acts as a worker until it holds a certificate for its new role.
    return { nodeId, role: rec.role === 'manager' && role === 'manager' ? 'manager' : 'worker' };
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
        await route.handler({ caller, body: undefined, params, stream, headers });
        return;
      }
      const body = method === 'POST' ? await readJson(stream, route.maxBody ?? MAX_BODY) : undefined;
      const result = await route.handler({ caller, body, params, stream, headers });
      respond(stream, 200, result ?? {});
    } catch (e) {
      const status = e instanceof VxError ? e.status : 500;
      if (e instanceof NotLeaderError) {
        respond(stream, status, { message: errorMessage(e) }, { [LEADER_HEADER]: e.leaderAddr ?? '' });
        return;
      }
      if (status >= 500) this.log.error('manager api error', { path, error: errorMessage(e) });
      respond(stream, status, { message: errorMessage(e) });
    }
  }

  /**
   * An Engine API call a follower manager forwards: replayed on our own Engine API socket, so
   * the leader answers it exactly as if it had been asked directly. Only cluster paths.
   */
  private engine(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    this.ctl.mustLead();
    const method = String(headers['x-engine-method'] ?? '');
    const path = String(headers['x-engine-path'] ?? '');
    if (!this.engineSocket) throw new VxError('this manager cannot serve forwarded Engine API calls', 501);
    const bare = new URL(path, 'http://x').pathname.replace(/^\/v[\d.]+\//, '/');
    if (!/^[A-Z]+$/.test(method) || !path.startsWith('/') || !LEADER_ENGINE_PATH.test(bare)) throw new VxError(`not a cluster call: ${method} ${path}`, 403);
    const req = http.request({
      socketPath: this.engineSocket,
      method,
      path,
      headers: { ...(headers['content-type'] ? { 'content-type': String(headers['content-type']) } : {}), host: 'docker' },
    });
    req.on('response', (res) => {
      if (stream.destroyed) return res.destroy();
      const out: http2.OutgoingHttpHeaders = { ':status': 200, 'x-engine-status': String(res.statusCode ?? 500) };
      if (res.headers['content-type']) out['content-type'] = res.headers['content-type'];
      stream.respond(out);
      res.pipe(stream);
    });
    req.on('error', (e) => respond(stream, 502, { message: `leader's Engine API: ${errorMessage(e)}` }));
    stream.on('close', () => req.destroy());
    stream.pipe(req);
  }

  private onSessionLine(nodeId: string, line: string, openedAt: number): void {
    try {
      const msg = JSON.parse(line) as { type?: unknown };
      if (msg.type !== 'state') return;
      const r = parseNodeReport(msg);
      void this.ctl
        .mustLead()
        .orchestrator.nodeReport(nodeId, r, openedAt)
        .catch((e: unknown) => this.log.warn('could not apply a node report', { node: nodeId, error: errorMessage(e) }));
    } catch (e) {
      this.log.warn('bad session message from a node', { node: nodeId, error: errorMessage(e) });
    }
  }

  /** A node's session: heartbeats come up as lines; closing it (or the daemon dying) marks the node down. */
  private session(caller: Caller, stream: http2.ServerHttp2Stream): void {
    const { manager, orchestrator } = this.ctl.mustLead();
    const node = manager.sessionOpened(caller.nodeId);
    this.liveStreams.add(stream);
    stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' });
    const send = (msg: unknown): void => {
      if (!stream.closed && !stream.destroyed) stream.write(`${JSON.stringify(msg)}\n`);
    };
    send({ type: 'welcome', node, managers: this.ctl.members().map((m) => m.addr), gossipKeys: manager.gossipKeys() });
    const onKeys = (keys: string[]): void => send({ type: 'gossip-keys', gossipKeys: keys });
    // Dispatcher: the node's complete assignment set, sent whenever it changes.
    let lastSet = '';
    const sendAssignments = (): void => {
      const tasks = orchestrator.assignments(caller.nodeId);
      const key = JSON.stringify(tasks.map((t) => [t.id, t.version]));
      if (key === lastSet) return;
      lastSet = key;
      const netIds = [...new Set(tasks.flatMap((t) => t.networks.map((n) => n.networkId)))];
      send({ type: 'assignments', tasks, networks: netIds.map((id) => manager.store.getNetwork(id)).filter((n) => n) });
    };
    manager.on('tasks-changed', sendAssignments);
    const onLogs = (nodeId: string, req: unknown): void => {
      if (nodeId === caller.nodeId) send({ type: 'logs-request', ...(req as object) });
    };
    manager.on('logs-request', onLogs);
    stream.once('close', () => manager.off('logs-request', onLogs));
    stream.once('close', () => manager.off('tasks-changed', sendAssignments));
    setImmediate(sendAssignments);
    this.ctl.on('gossip-keys', onKeys);
    stream.once('close', () => this.ctl.off('gossip-keys', onKeys));
    // Up the stream: heartbeats ("{}") and, once per session, the node's whole state.
    const openedAt = Date.now();
    let up = '';
    stream.on('data', (c: Buffer) => {
      manager.heartbeat(caller.nodeId);
      up += c.toString('utf8');
      if (up.length > MAX_BODY) {
        this.log.warn('session line too long: closing', { node: caller.nodeId });
        stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
        return;
      }
      for (let i = up.indexOf('\n'); i >= 0; i = up.indexOf('\n')) {
        const line = up.slice(0, i);
        up = up.slice(i + 1);
        if (line.length > 2) this.onSessionLine(caller.nodeId, line, openedAt);
      }
    });
    // Heartbeats down as well, so an agent notices a leader it can no longer hear.
    const beat = setInterval(() => send({ type: 'heartbeat' }), HEARTBEAT_PERIOD_MS);
    beat.unref();
    stream.once('close', () => clearInterval(beat));
    let closed = false;
    const done = (): void => {
      if (closed) return;
      closed = true;
      this.liveStreams.delete(stream);
      manager.sessionClosed(caller.nodeId);
    };
    stream.on('close', done);
    stream.on('error', done);
    const onRemoved = (id: string): void => {
      if (id === caller.nodeId) stream.close(http2.constants.NGHTTP2_CANCEL);
    };
    this.ctl.on('node-removed', onRemoved);
    stream.once('close', () => this.ctl.off('node-removed', onRemoved));
    // A new role: end the session; the node reconnects, reads its role in the welcome and switches.
    const onRole = (id: string): void => {
      if (id === caller.nodeId) stream.close();
    };
    this.ctl.on('node-role', onRole);
    stream.once('close', () => this.ctl.off('node-role', onRole));
  }
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new VxError(`missing or invalid field "${what}"`, 400);
  return v;
}

async function readJson(stream: http2.ServerHttp2Stream, max: number): Promise<unknown> {
  const body = await readBody(stream as AsyncIterable<Buffer>, max);
  if (body.length === 0) return {};
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new VxError('malformed JSON body', 400);
  }
}

/** A node's report, type-checked: a malformed one changes nothing. */
function parseNodeReport(m: Record<string, unknown>): NodeReport {
  const strings = (v: unknown, what: string): string[] => {
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new VxError(`node report: "${what}" must be a list of strings`, 400);
    return v as string[];
  };
  if (!Array.isArray(m.tasks)) throw new VxError('node report: "tasks" must be a list', 400);
  const tasks = m.tasks.map((t: Record<string, unknown>) => {
    if (typeof t?.id !== 'string' || !['created', 'running', 'exited', 'dead'].includes(t.status as string) || typeof t.exitCode !== 'number')
      throw new VxError('node report: a task needs id, status and exitCode', 400);
    return {
      id: t.id,
      status: t.status as NodeReport['tasks'][number]['status'],
      exitCode: t.exitCode,
      containerId: typeof t.containerId === 'string' ? t.containerId : '',
    };
  });
  return { tasks, starting: strings(m.starting, 'starting'), attachments: strings(m.attachments, 'attachments') };
}

function respond(stream: http2.ServerHttp2Stream, status: number, body: unknown, extra: http2.OutgoingHttpHeaders = {}): void {
  if (stream.destroyed || stream.closed) return;
  if (!stream.headersSent) stream.respond({ ':status': status, 'content-type': 'application/json', ...extra });
  stream.end(JSON.stringify(body));
}
