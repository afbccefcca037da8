/**
 * The host-side agent client against the real AgentServer on a unix socket (the guest side of the
 * protocol without a VM), and against scripted servers for the failure cases.
 */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentClient } from '../../../runtime-core/agent/client.js';
import { makeIp } from '../../../guest/agent/ip.js';
import { spawnRunner } from '../../../guest/agent/runner.js';
import { AgentServer } from '../../../guest/agent/server.js';
import { serveStream } from '../../../guest/agent/transport.js';
import { silentLogger } from '../../../host/log.js';

type T = { teardown(fn: () => unknown): void };

async function sockPath(t: T): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'krt-agentc-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return join(d, 'agent.sock');
}

function listen(t: T, path: string, onConn: (s: Socket) => void): Promise<Server> {
  const srv = createServer(onConn);
  const conns = new Set<Socket>();
  srv.on('connection', (c) => {
    conns.add(c);
    c.on('close', () => conns.delete(c));
  });
  t.teardown(() => {
    for (const c of conns) c.destroy();
    srv.close();
  });
  return new Promise((resolve) => srv.listen(path, () => resolve(srv)));
}

function realAgent(): AgentServer {
  const links = [
    {
      ifindex: 1,
      ifname: 'lo',
      flags: ['LOOPBACK', 'UP'],
      mtu: 65536,
      link_type: 'loopback',
      address: '00:00:00:00:00:00',
      addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }],
    },
  ];
  return new AgentServer({
    network: { ip: makeIp(async () => ({ stdout: JSON.stringify(links), stderr: '', exitCode: 0, timedOut: false, truncated: false })) },
    storage: { run: spawnRunner, sysfs: '/nonexistent', dev: '/nonexistent', mountsFile: '/proc/self/mounts' },
    run: spawnRunner,
    shutdown: () => {},
  });
}

t.test('typed calls round-trip; agent errors become E_AGENT with the agent code', async (t) => {
  const path = await sockPath(t);
  const agent = realAgent();
  await listen(t, path, (s) => serveStream(agent, s));
  const c = new AgentClient({ socketPath: path, log: silentLogger() });
  t.teardown(() => c.close());
  t.same(await c.check(), { status: 'SERVING' });
  const ifs = await c.listInterfaces();
  t.equal(ifs.Interfaces[0]?.name, 'lo');
  const r = await c.exec(['sh', '-c', 'echo hi; exit 2']);
  t.match(r, { exitCode: 2, stdout: 'hi\n' });
  // Concurrent calls are matched to their answers by id.
  const [a, b] = await Promise.all([c.exec(['sh', '-c', 'sleep 0.2; echo slow']), c.exec(['echo', 'fast'])]);
  t.equal(a.stdout, 'slow\n');
  t.equal(b.stdout, 'fast\n');
  await t.rejects(c.updateRoutes([{ dest: 'not-an-ip', gateway: '', device: 'eth0', source: '', scope: 0, family: 0, flags: 0, mtu: 0 }]), {
    code: 'E_AGENT',
    details: { agentCode: 'E_INVALID_ARGUMENT', method: 'UpdateRoutes' },
    message: /not-an-ip/,
  });
  await t.rejects(c.call('Nope' as 'Check', {}), { code: 'E_AGENT', details: { agentCode: 'E_UNIMPLEMENTED' } });
});

t.test('no answer in time is E_TIMEOUT; a closed connection fails calls in flight with E_AGENT', async (t) => {
  const path = await sockPath(t);
  let conn: Socket | undefined;
  await listen(t, path, (s) => {
    conn = s;
    s.on('data', () => {});
  }); // reads, never answers
  const c = new AgentClient({ socketPath: path, log: silentLogger() });
  t.teardown(() => c.close());
  await t.rejects(c.check({ timeoutMs: 150 }), { code: 'E_TIMEOUT', message: /Check.*150 ms/ });
  const inFlight = c.listRoutes({ timeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 50));
  conn!.destroy();
  await t.rejects(inFlight, { code: 'E_AGENT', message: /closed/ });
  c.close();
  await t.rejects(c.check(), { code: 'E_AGENT', message: /closed/ }, 'a closed client refuses calls');
});

t.test('waitReady waits for the socket to appear and accepts a late answer to an early Check', async (t) => {
  const path = await sockPath(t);
  const c = new AgentClient({ socketPath: path, log: silentLogger() });
  t.teardown(() => c.close());
  const waiting = c.waitReady(5000, { resendMs: 200 });
  await new Promise((r) => setTimeout(r, 300)); // QEMU not started yet: no socket
  // Like QEMU before the guest opened its port: requests are held, then all answered at once, late.
  const seen: number[] = [];
  await listen(t, path, (s) => {
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) seen.push(JSON.parse(buf.slice(0, i)).id);
    });
    setTimeout(() => {
      for (const id of seen.slice(0, 1)) s.write(`${JSON.stringify({ id, result: { status: 'SERVING' } })}\n`);
    }, 700);
  });
  const ms = await waiting;
  t.ok(ms >= 300, `ready after ${ms} ms, not before the socket existed`);
  t.ok(seen.length >= 2, 'Check was re-sent while unanswered');
  t.ok(c.connected, 'the connection stays open for the calls that follow');
});

t.test('waitReady gives up with E_TIMEOUT, or at once when aborted', async (t) => {
  const path = await sockPath(t);
  const c = new AgentClient({ socketPath: path, log: silentLogger() });
  t.teardown(() => c.close());
  await t.rejects(c.waitReady(300), { code: 'E_TIMEOUT', message: /did not become ready within 300 ms/ });
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error('QEMU exited')), 100);
  const started = Date.now();
  await listen(t, path, (s) => s.on('data', () => {}));
  await t.rejects(c.waitReady(10_000, { signal: ac.signal }), { code: 'E_AGENT', message: /aborted/ });
  t.ok(Date.now() - started < 3000, 'abort ends the wait early');
});
