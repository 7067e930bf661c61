import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { throttled, type Logger } from '../../src/core/log.js';
import { Keyring } from '../../src/gossip/keyring.js';
import { MAX_RECORD, NetTransport } from '../../src/gossip/transport.js';

const key = (b: number): Buffer => Buffer.alloc(32, b);

async function pair(): Promise<{ server: NetTransport; client: NetTransport; close: () => Promise<void> }> {
  const ring = new Keyring([key(1)]);
  const server = await NetTransport.listen('127.0.0.1', 0, ring);
  const client = await NetTransport.listen('127.0.0.1', 0, ring);
  return { server, client, close: async () => Promise.all([server.close(), client.close()]).then(() => undefined) };
}

/** Resolves when the server closes the raw connection; rejects if it is still open after `ms`. */
function closedWithin(sock: net.Socket, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`connection still open after ${ms} ms`)), ms);
    sock.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

test('gossip streams: a message of many records makes the round trip sealed', async () => {
  const { server, client, close } = await pair();
  try {
    server.onRequest(async (_from, data) => Buffer.concat([Buffer.from('re:'), data]));
    const big = Buffer.alloc(5 * MAX_RECORD + 123, 7);
    const reply = await client.request(server.addr, big, 5000);
    assert.equal(reply.length, big.length + 3);
    assert.equal(reply.subarray(0, 3).toString(), 're:');
    assert.ok(reply.subarray(3).equals(big));
    assert.deepEqual(await client.request(server.addr, Buffer.alloc(0), 5000), Buffer.from('re:'));
  } finally {
    await close();
  }
});

test('gossip streams: a huge declared frame is cut after its 4-byte length, before anything is kept', async () => {
  const { server, close } = await pair();
  let served = 0;
  server.onRequest(async () => {
    served++;
    return Buffer.alloc(0);
  });
  try {
    const sock = net.connect({ host: '127.0.0.1', port: Number(server.addr.split(':')[1]) });
    sock.on('error', () => undefined);
    await new Promise((r) => sock.once('connect', r));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(32 << 20);
    sock.write(head);
    // keep pushing: the server must not be reading any of it
    const junk = Buffer.alloc(1 << 20);
    const pump = setInterval(() => sock.writable && sock.write(junk), 5);
    await closedWithin(sock, 2000).finally(() => clearInterval(pump));
    assert.equal(server.streamsRefused, 1);
    assert.equal(served, 0);
  } finally {
    await close();
  }
});

test('gossip streams: the first record no key opens ends the connection; a wrong-key peer gets nothing', async () => {
  const { server, close } = await pair();
  const why: string[] = [];
  server.onRefused = (w) => why.push(w);
  let served = 0;
  server.onRequest(async () => {
    served++;
    return Buffer.from('secret state');
  });
  const stranger = await NetTransport.listen('127.0.0.1', 0, new Keyring([key(2)]));
  try {
    // a well-formed record of the largest size, sealed with nobody's key
    const sock = net.connect({ host: '127.0.0.1', port: Number(server.addr.split(':')[1]) });
    sock.on('error', () => undefined);
    await new Promise((r) => sock.once('connect', r));
    const forged = Buffer.alloc(MAX_RECORD);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(forged.length);
    sock.write(Buffer.concat([head, forged]));
    const more = setInterval(() => sock.writable && sock.write(Buffer.concat([head, forged])), 5);
    await closedWithin(sock, 2000).finally(() => clearInterval(more));
    await assert.rejects(stranger.request(server.addr, Buffer.from('hello'), 2000));
    assert.equal(served, 0);
    assert.equal(server.streamsRefused, 2);
    assert.match(why[0]!, /failed authentication/);
  } finally {
    await stranger.close();
    await close();
  }
});

test('gossip streams: idle connections beyond the limit are refused at once, and served again once they go', async () => {
  const { server, client, close } = await pair();
  server.onRequest(async () => Buffer.from('ok'));
  const port = Number(server.addr.split(':')[1]);
  const idle: net.Socket[] = [];
  try {
    for (let i = 0; i < 16; i++) {
      const s = net.connect({ host: '127.0.0.1', port });
      s.on('error', () => undefined);
      await new Promise((r) => s.once('connect', r));
      idle.push(s);
    }
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(client.request(server.addr, Buffer.from('x'), 2000));
    assert.ok(server.streamsRefused >= 1);
    for (const s of idle) s.destroy();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await client.request(server.addr, Buffer.from('x'), 2000), Buffer.from('ok'));
  } finally {
    for (const s of idle) s.destroy();
    await close();
  }
});

test('a repeated warning is written once per interval and says how many it left out', () => {
  const lines: Record<string, unknown>[] = [];
  const log = { warn: (_m: string, f?: Record<string, unknown>) => lines.push(f ?? {}) } as unknown as Logger;
  const warn = throttled(log, 'dropped', 60_000);
  for (let i = 0; i < 20_000; i++) warn({ why: 'no key opens the packet' });
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.suppressed, undefined);
});
