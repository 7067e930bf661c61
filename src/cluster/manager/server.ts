// The manager API on 2377: HTTP/2 + JSON over mutual TLS. Joining (fetching the CA, sending
// a CSR with a token) needs no client certificate; every other call does, and each route
// checks the caller's role from its certificate, on this side. Any manager serves nodes' sessions
// and their calls from its own store; joins and etcd membership are the leader's, and a follower
// answers those with 503 and the leader's address, which clients follow. (etcd's own traffic
// between managers has its own port, 2380.)
import http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { readBody } from '../../core/body.js';
import { VxError, errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { Mutex } from '../../core/mutex.js';
import { LEADER_HEADER } from '../agent/client.js';
import { MAX_BODY, splitHostPort } from '../wire.js';
import { ouRole, type Role } from './ca.js';
import { NotLeaderError, type ControlPlane } from './control.js';
import type { SessionPeer } from './dispatcher.js';
import { ForbiddenError } from './manager.js';
import type { NodeResources, TaskStatusReport } from './types.js';

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
            ...(resourcesOf(b.resources) ? { resources: resourcesOf(b.resources)! } : {}),
            ...(typeof b.managerPort === 'number' ? { managerPort: b.managerPort } : {}),
          };
          return this.joins.lock(() => api().manager.join(req));
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
        // Another manager gathering a service's logs: the lines of a node whose session is here.
        method: 'POST',
        re: /^\/v1\/logs$/,
        auth: 'manager',
        handler: async ({ body }) => {
          const b = body as Record<string, unknown>;
          const since = typeof b.since === 'string' ? b.since : undefined;
          return { lines: (await ctl.dispatcher.requestLogs(str(b.node, 'node'), str(b.service, 'service'), since)) ?? [] };
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
    server.on('stream', (stream, headers) => {
      // A node that dies mid-call resets its streams: that is the caller's loss, never ours (an
      // 'error' with no listener would end this daemon).
      stream.on('error', (e) => this.log.debug('manager api stream error', { error: errorMessage(e) }));
      void this.dispatch(stream, headers);
    });
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

  /** Stops listening and drops every connection (agents reconnect to another manager). */
  async close(): Promise<void> {
    for (const s of this.liveStreams) s.close();
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
   * A node's session: an NDJSON stream each way, served by this manager's dispatcher. Heartbeats
   * and the node's messages come up; the welcome, assignments and heartbeats go down.
   */
  private async session(caller: Caller, stream: http2.ServerHttp2Stream): Promise<void> {
    const peer: SessionPeer = {
      local: false,
      send: (msg) => {
        if (stream.closed || stream.destroyed) return;
        if (!stream.headersSent) stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' });
        stream.write(`${JSON.stringify(msg)}\n`);
      },
      close: (how) => stream.close(how === 'refused' ? http2.constants.NGHTTP2_CANCEL : http2.constants.NGHTTP2_NO_ERROR),
    };
    const h = await this.ctl.dispatcher.open(caller.nodeId, peer);
    this.liveStreams.add(stream);
    let ended = false;
    const done = (): void => {
      if (ended) return;
      ended = true;
      this.liveStreams.delete(stream);
      h.closed();
    };
    stream.on('close', done);
    stream.on('error', done);
    if (stream.closed || stream.destroyed) return done();
    let up = '';
    stream.on('data', (c: Buffer) => {
      h.heard();
      up += c.toString('utf8');
      if (up.length > MAX_BODY) {
        this.log.warn('session line too long: closing', { node: caller.nodeId });
        stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
        return;
      }
      for (let i = up.indexOf('\n'); i >= 0; i = up.indexOf('\n')) {
        const line = up.slice(0, i);
        up = up.slice(i + 1);
        if (line.length <= 2) continue;
        try {
          h.receive(JSON.parse(line) as Record<string, unknown>);
        } catch (e) {
          this.log.warn('bad session message from a node', { node: caller.nodeId, error: errorMessage(e) });
        }
      }
    });
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

function respond(stream: http2.ServerHttp2Stream, status: number, body: unknown, extra: http2.OutgoingHttpHeaders = {}): void {
  if (stream.destroyed || stream.closed) return;
  if (!stream.headersSent) stream.respond({ ':status': status, 'content-type': 'application/json', ...extra });
  stream.end(JSON.stringify(body));
}

/** A joining node's resources, if it sent them as numbers. */
function resourcesOf(v: unknown): NodeResources | undefined {
  const r = v as { nanoCpus?: unknown; memoryBytes?: unknown } | null | undefined;
  return r && typeof r.nanoCpus === 'number' && typeof r.memoryBytes === 'number' && r.nanoCpus > 0 && r.memoryBytes > 0
    ? { nanoCpus: r.nanoCpus, memoryBytes: r.memoryBytes }
    : undefined;
}
