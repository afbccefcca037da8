import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Task } from '../../shim/generated/containerd/runtime/v2/task/shim_pb.js';
import { TtrpcClient } from '../../ttrpc/client.js';
import { TtrpcServer } from '../../ttrpc/server.js';
import { serverProcess } from './helpers/server-process.js';
import { testTaskService } from './helpers/task-service.js';

/**
 * 50 Waits and 50 States on one connection, and one more Wait held open through it all: every
 * State is answered while all Waits block; then the Waits are released one at a time in an order
 * unrelated to the order they were sent, and each answer arrives in release order, carrying its
 * own exit status (so the answers are matched to their calls by stream id, not by position).
 */
async function battery(t: Test, client: TtrpcClient): Promise<void> {
  const settled: string[] = [];
  const track = <T>(name: string, p: Promise<T>): Promise<T> =>
    p.then((v) => {
      settled.push(name);
      return v;
    });
  const held = track('held', client.call(Task.method.wait, { id: 'held' }));
  const waits = new Map<number, Promise<{ exitStatus: number }>>();
  const states: Promise<{ id: string }>[] = [];
  for (let i = 0; i < 100; i++) {
    if (i % 2 === 0) waits.set(i, track(`w${i}`, client.call(Task.method.wait, { id: `w${i}` })));
    else states.push(track(`s${i}`, client.call(Task.method.state, { id: `s${i}` })));
  }
  const stateAnswers = await Promise.all(states);
  t.same(
    stateAnswers.map((s) => s.id),
    states.map((_, k) => `s${2 * k + 1}`),
    'every State got its own answer',
  );
  t.equal(settled.filter((s) => s.startsWith('w') || s === 'held').length, 0, 'all 50 States answered while 51 Waits block');

  // Release order: 7, 14, 21, ... (mod 100, even ids only): unrelated to the sending order.
  const order = [...waits.keys()].sort((a, b) => ((a * 7) % 101) - ((b * 7) % 101));
  const answered: number[] = [];
  for (const i of order) {
    await client.call(Task.method.kill, { id: `w${i}`, signal: i });
    const r = await waits.get(i)!;
    t.equal(r.exitStatus, i, `w${i} answered with its own exit status`) || t.bailout();
    answered.push(i);
  }
  t.same(
    settled.filter((s) => s.startsWith('w')),
    order.map((i) => `w${i}`),
    'Waits answered in completion (release) order',
  );
  t.notOk(settled.includes('held'), 'the held Wait is still open after 100 other calls');
  await client.call(Task.method.kill, { id: 'held', signal: 9 });
  t.equal((await held).exitStatus, 9, 'the held Wait is answered once released');
}

t.test('in one process', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-ttrpc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const server = new TtrpcServer().register(Task, testTaskService().impl);
  await server.listen({ path: join(dir, 's.sock') });
  t.teardown(() => server.close());
  const client = await TtrpcClient.connect(join(dir, 's.sock'));
  t.teardown(() => client.close());
  await battery(t, client);
  t.equal(server.connectionCount, 1, 'all of it on one connection');
});

t.test('across processes: the server gets its listening socket as fd 3', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-ttrpc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'fd3.sock');
  const { pid, client } = await serverProcess(t, path);
  const c = await client.call(Task.method.connect, { id: 'x' });
  t.equal(c.shimPid, pid, 'Connect is answered by the other process (socket activation execs in place)');
  await battery(t, client);
});
