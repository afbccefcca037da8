import t from 'tap';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { QmpClient } from '../../../../runtime-core/hypervisor/qemu/qmp-client.js';
import { tempDir } from '../../../helpers/runtime-core.js';

/**
 * A QMP server whose answers the test scripts: it greets, accepts qmp_capabilities, then hands every
 * other request to `onRequest`. Lets the test answer out of order, late, or never.
 */
async function scriptedServer(
  t: { teardown(fn: () => unknown): void },
  onRequest: (req: { execute: string; id: unknown; arguments?: unknown }, sock: Socket) => void,
): Promise<{ path: string; server: Server; sockets: Socket[] }> {
  const path = join(tempDir(t, 'qmp'), 'qmp.sock');
  const sockets: Socket[] = [];
  const server = createServer((sock) => {
    sockets.push(sock);
    sock.setEncoding('utf8');
    sock.write('{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "scripted"}, "capabilities": ["oob"]}}\r\n');
    let buf = '';
    sock.on('data', (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const req = JSON.parse(buf.slice(0, i)) as { execute: string; id: unknown };
        buf = buf.slice(i + 1);
        if (req.execute === 'qmp_capabilities') sock.write(`${JSON.stringify({ return: {}, id: req.id })}\r\n`);
        else onRequest(req, sock);
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { path, server, sockets };
}

t.test('answers are matched to requests by id, whatever their order', async (t) => {
  const held: { id: unknown; execute: string; sock: Socket }[] = [];
  const srv = await scriptedServer(t, (req, sock) => {
    held.push({ id: req.id, execute: req.execute, sock });
    if (held.length === 3) {
      // Answer newest first.
      for (const h of [...held].reverse()) h.sock.write(`${JSON.stringify({ return: { for: h.execute }, id: h.id })}\r\n`);
    }
  });
  const c = await QmpClient.connect(srv.path);
  t.teardown(() => c.close());
  const [a, b, d] = await Promise.all([c.execute('cmd-a'), c.execute('cmd-b'), c.execute('cmd-c')]);
  t.same([a, b, d], [{ for: 'cmd-a' }, { for: 'cmd-b' }, { for: 'cmd-c' }]);
  t.equal(new Set(held.map((h) => h.id)).size, 3, 'each request had its own id');
  t.ok(held.every((h) => typeof h.id === 'number'));
});

t.test('a command without an answer times out alone; a late answer is dropped', async (t) => {
  let late: (() => void) | undefined;
  const srv = await scriptedServer(t, (req, sock) => {
    if (req.execute === 'slow') late = () => sock.write(`${JSON.stringify({ return: 'too late', id: req.id })}\r\n`);
    else sock.write(`${JSON.stringify({ return: 'fast', id: req.id })}\r\n`);
  });
  const c = await QmpClient.connect(srv.path, { commandTimeoutMs: 5000 });
  t.teardown(() => c.close());
  const slow = c.execute('slow', {}, { timeoutMs: 100 });
  t.equal(await c.execute('quick'), 'fast', 'other commands are not held up');
  await t.rejects(slow, { code: 'E_TIMEOUT', message: /QMP slow got no answer within 100 ms/ });
  late!();
  t.equal(await c.execute('quick'), 'fast', 'the late answer did not confuse the next command');
});

t.test('waitEvent filters by name and predicate and times out', async (t) => {
  const srv = await scriptedServer(t, (req, sock) => {
    sock.write(`${JSON.stringify({ return: {}, id: req.id })}\r\n`);
    sock.write(
      `${JSON.stringify({ event: 'DEVICE_DELETED', data: { path: '/machine/peripheral/dev-x/virtio-backend' }, timestamp: { seconds: 1, microseconds: 0 } })}\r\n`,
    );
    sock.write(
      `${JSON.stringify({ event: 'DEVICE_DELETED', data: { device: 'dev-y', path: '/machine/peripheral/dev-y' }, timestamp: { seconds: 1, microseconds: 1 } })}\r\n`,
    );
    sock.write(
      `${JSON.stringify({ event: 'DEVICE_DELETED', data: { device: 'dev-x', path: '/machine/peripheral/dev-x' }, timestamp: { seconds: 1, microseconds: 2 } })}\r\n`,
    );
  });
  const c = await QmpClient.connect(srv.path);
  t.teardown(() => c.close());
  const forX = c.waitEvent('DEVICE_DELETED', (e) => e.data?.device === 'dev-x', 5000);
  const never = c.waitEvent('DEVICE_DELETED', (e) => e.data?.device === 'dev-z', 200);
  await c.execute('device_del', { id: 'dev-x' });
  t.same((await forX).data, { device: 'dev-x', path: '/machine/peripheral/dev-x' }, 'the backend and the other device were skipped');
  await t.rejects(never, { code: 'E_TIMEOUT', message: /DEVICE_DELETED did not arrive within 200 ms/ });
});

t.test('the server closing fails pending commands as Disconnected', async (t) => {
  const srv = await scriptedServer(t, (_req, sock) => {
    setTimeout(() => sock.destroy(), 20);
  });
  const c = await QmpClient.connect(srv.path);
  await t.rejects(c.execute('anything'), { code: 'E_QMP', qmpClass: 'Disconnected' });
  t.ok(c.closed);
});

t.test('a server that never greets makes connect time out', async (t) => {
  const path = join(tempDir(t, 'qmp'), 'mute.sock');
  const socks: Socket[] = [];
  const server = createServer((s) => {
    socks.push(s);
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.teardown(() => {
    for (const s of socks) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  await t.rejects(QmpClient.connect(path, { connectTimeoutMs: 200 }), { code: 'E_TIMEOUT', message: /no greeting/ });
});
