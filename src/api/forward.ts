// The few cluster calls only the leader can answer (service logs travel over the nodes' sessions)
// a follower manager forwards to it: the answer is the leader's, byte for byte.
import type http from 'node:http';
import { LEADER_ENGINE_PATH } from '../cluster/wire.js';
import type { Daemon } from '../daemon/daemon.js';

export async function forwardToLeader(d: Daemon, path: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> {
  if (!d.forwardsToLeader || !LEADER_ENGINE_PATH.test(path)) return false;
  const r = await d.forwardEngine(req.method ?? 'GET', req.url ?? path, req.headers['content-type'] ?? '', req);
  res.writeHead(r.status, r.contentType ? { 'Content-Type': r.contentType } : {});
  r.body.pipe(res);
  res.on('close', () => r.body.destroy());
  // The leader's stream dropped before its end: the caller's connection goes too (outcome unknown).
  r.body.on('close', () => {
    if (!res.writableEnded) res.destroy();
  });
  return true;
}
