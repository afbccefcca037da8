import t from 'tap';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Task } from '../../shim/generated/containerd/runtime/v2/task/shim_pb.js';
import { TtrpcClient } from '../../ttrpc/client.js';
import { TtrpcServer } from '../../ttrpc/server.js';
import { testTaskService } from './helpers/task-service.js';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'krt-ttrpc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('the socket is mode 0600; a stale one is replaced; a served one, or a path over 107 bytes, is refused', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'stale.sock');
  // A stale socket: its server was killed and never unlinked it (what a killed shim leaves).
  const holder = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((r) => holder.stdout!.once('data', () => r()));
  holder.kill('SIGKILL');
  await new Promise<void>((r) => holder.once('exit', () => r()));
  t.ok(statSync(path).isSocket(), 'a stale socket file is there');
  const server = new TtrpcServer().register(Task, testTaskService().impl);
  await server.listen({ path });
  t.teardown(() => server.close());
  t.equal(statSync(path).mode & 0o777, 0o600, 'mode 0600');
  const c = await TtrpcClient.connect(path);
  t.equal((await c.call(Task.method.state, { id: 'fresh' })).id, 'fresh', 'the new server serves on the path');
  c.close();

  const second = new TtrpcServer();
  await t.rejects(second.listen({ path }), { code: 'E_INVALID_ARGUMENT', message: /already served/ }, 'a live socket is not taken over');
  const long = join(dir, 'x'.repeat(120));
  await t.rejects(new TtrpcServer().listen({ path: long }), { code: 'E_SOCKET_PATH_TOO_LONG' });
});

t.test('several connections at once, each with a blocking call and others', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'many.sock');
  const svc = testTaskService();
  const server = new TtrpcServer().register(Task, svc.impl);
  await server.listen({ path });
  t.teardown(() => server.close());
  const clients = await Promise.all([0, 1, 2, 3, 4].map(() => TtrpcClient.connect(path)));
  t.teardown(() => {
    for (const c of clients) c.close();
  });
  const waits = clients.map((c, i) => c.call(Task.method.wait, { id: `w${i}` }));
  const states = await Promise.all(clients.map((c, i) => c.call(Task.method.state, { id: `s${i}` })));
  t.same(
    states.map((s) => s.id),
    ['s0', 's1', 's2', 's3', 's4'],
  );
  t.equal(server.connectionCount, 5);
  // Release each Wait from another connection than its own.
  await Promise.all(clients.map((c, i) => c.call(Task.method.kill, { id: `w${(i + 1) % 5}`, signal: 10 + ((i + 1) % 5) })));
  t.same(
    (await Promise.all(waits)).map((w) => w.exitStatus),
    [10, 11, 12, 13, 14],
  );
});

t.test('close() stops accepting, finishes what is in flight, then resolves and removes the socket', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'close.sock');
  const server = new TtrpcServer().register(Task, testTaskService().impl);
  await server.listen({ path });
  const client = await TtrpcClient.connect(path);
  t.teardown(() => client.close());
  const wait = client.call(Task.method.wait, { id: 'w' });
  await client.call(Task.method.state, { id: 'x' }); // the Wait is in flight by now
  let closed = false;
  const closing = server.close({ timeoutMs: 60_000 }).then(() => {
    closed = true;
  });
  await t.rejects(TtrpcClient.connect(path), { code: 'E_TTRPC_CLOSED' }, 'no new connections');
  t.notOk(closed, 'close waits for the Wait');
  await client.call(Task.method.kill, { id: 'w', signal: 15 });
  t.equal((await wait).exitStatus, 15, 'the in-flight Wait is answered');
  await closing;
  t.ok(closed);
  await t.rejects(client.call(Task.method.state, { id: 'y' }), { code: 'E_TTRPC_CLOSED' }, 'the server closed the connection');
  t.notOk(existsSync(path), 'the socket file is gone');
});

t.test('close() is bounded: after its timeout, connections drop and handlers see their signal abort', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'bounded.sock');
  const svc = testTaskService();
  const server = new TtrpcServer().register(Task, svc.impl);
  await server.listen({ path });
  const client = await TtrpcClient.connect(path);
  t.teardown(() => client.close());
  const stuck = client.call(Task.method.pause, { id: 'never' });
  await client.call(Task.method.state, { id: 'x' });
  const failed = t.rejects(stuck, { code: 'E_TTRPC_CLOSED' }, 'the pending call fails as closed');
  await server.close({ timeoutMs: 200 });
  await failed;
  t.match(svc.aborts.at(-1), { code: 'E_TTRPC_CLOSED' }, 'the handler was aborted');
});
