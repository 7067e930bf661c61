import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/core/log.js';
import { BODY_DEADLINE_MS, Router, createHttpServer, listenUnix, parseTarget } from '../../src/api/http.js';

describe('Engine API router: hostile paths and bodies', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxapi-'));
  const sock = path.join(dir, 'api.sock');
  const calls: string[] = [];
  let server: http.Server;

  before(async () => {
    const r = new Router(() => ({}));
    r.on('DELETE', '/services/:id', (c) => void calls.push(`service ${c.params[0]}`));
    r.on('DELETE', '/networks/:id', (c) => void calls.push(`network ${c.params[0]}`));
    r.on('POST', '/networks/create', async (c) => ({ status: 201, json: { got: await c.body() } }));
    r.onUpgrade('/exec/:id/start', async ({ params, socket }) => {
      calls.push(`exec ${params[0]}`);
      socket.end('HTTP/1.1 101 UPGRADED\r\n\r\n');
    });
    server = createHttpServer(r, createLogger());
    await listenUnix(server, sock);
  });
  after(async () => {
    await new Promise((r) => server.close(r));
    server.closeAllConnections();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A request written by hand, so nothing on our side cleans the path first. */
  function raw(text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = net.connect(sock);
      let out = '';
      s.on('data', (d) => (out += d.toString()));
      s.on('end', () => resolve(out));
      s.on('error', reject);
      s.end(text);
    });
  }
  const status = (reply: string): number => Number(/^HTTP\/1\.1 (\d+)/.exec(reply)?.[1]);

  it('refuses . and .. segments, encoded separators and absolute-form targets with 400, and calls no handler', async () => {
    for (const p of [
      '/v1.41/services/../networks/n1',
      '/services/../services/web',
      '/services/./web',
      '/services/%2e%2e/networks/n1',
      '/services/%2E%2e',
      '/networks/..%2F..%2Fetc',
      '/networks/a%5Cb',
      'http://evil/services/web',
      '/networks/%zz',
    ]) {
      const reply = await raw(`DELETE ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      assert.equal(status(reply), 400, `${p}: ${reply}`);
    }
    const up = await raw('POST /v1.41/exec/../x/start HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n');
    assert.equal(status(up), 400, up);
    assert.deepEqual(calls, []);
    // the same routes still work with a clean path
    assert.equal(status(await raw('DELETE /v1.41/services/web HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')), 204);
    assert.deepEqual(calls, ['service web']);
    assert.throws(() => parseTarget('/a/../b'), /not allowed/);
    assert.deepEqual(parseTarget('/networks/x?filters=%7B%7D').query.get('filters'), '{}');
  });

  it('a JSON body must say it is JSON', async () => {
    const body = '{"Name":"x"}';
    const send = (ct: string | undefined): Promise<string> =>
      raw(
        `POST /networks/create HTTP/1.1\r\nHost: x\r\n${ct ? `Content-Type: ${ct}\r\n` : ''}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      );
    const plain = await send('text/plain');
    assert.equal(status(plain), 400);
    assert.match(plain, /unsupported Content-Type header \(text\/plain\): must be 'application\/json'/);
    assert.equal(status(await send(undefined)), 400);
    assert.equal(status(await send('application/json; charset=utf-8')), 201);
    // no body, no Content-Type: fine
    assert.equal(status(await raw('POST /networks/create HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')), 201);
  });

  it('a body trickled a byte a second is cut with 408 at the deadline', { timeout: BODY_DEADLINE_MS + 10_000 }, async () => {
    const s = net.connect(sock);
    let out = '';
    s.on('data', (d) => (out += d.toString()));
    const t0 = Date.now();
    s.write('POST /networks/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n');
    const drip = setInterval(() => s.writable && s.write(' '), 1000);
    await new Promise<void>((resolve) => s.once('close', () => resolve()));
    clearInterval(drip);
    const took = Date.now() - t0;
    assert.equal(status(out), 408, out);
    assert.ok(took >= BODY_DEADLINE_MS - 100 && took < BODY_DEADLINE_MS + 3000, `cut after ${took} ms`);
  });
});
