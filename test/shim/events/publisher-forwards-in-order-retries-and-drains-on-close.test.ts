import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { pino } from 'pino';
import { TaskExitSchema, TaskOOMSchema, TaskStartSchema } from '../../../shim/generated/containerd/api/events/task_pb.js';
import { type Envelope, Events } from '../../../shim/generated/containerd/api/services/ttrpc/events/v1/events_pb.js';
import { EventPublisher, type PublisherOptions } from '../../../shim/events/publisher.js';
import { GrpcCode } from '../../../ttrpc/codes.js';
import { TtrpcError } from '../../../ttrpc/errors.js';
import type { CallContext } from '../../../ttrpc/server.js';
import { TtrpcServer } from '../../../ttrpc/server.js';

interface Received {
  envelope: Envelope;
  ctx: CallContext;
  at: number;
}

/**
 * A stand-in for containerd's Events service (the real one is exercised in
 * publisher-delivers-task-events-to-containerd.test.ts): records every Forward and answers as
 * `answer` says (undefined = OK).
 */
async function eventsServer(
  t: Test,
  path: string,
  answer: (e: Envelope, n: number) => Promise<void> | void = () => {},
): Promise<{ server: TtrpcServer; got: Received[]; topics(): string[] }> {
  const got: Received[] = [];
  const server = new TtrpcServer().register(Events, {
    forward: async (req, ctx) => {
      got.push({ envelope: req.envelope!, ctx, at: Date.now() });
      await answer(req.envelope!, got.length);
      return {};
    },
  });
  await server.listen({ path });
  t.teardown(() => server.close({ timeoutMs: 500 }));
  return { server, got, topics: () => got.map((g) => g.envelope.topic) };
}

function setup(
  t: Test,
  opts: Partial<PublisherOptions> = {},
): { path: string; publisher: EventPublisher; logs: { msg: string; level: number }[] } {
  const dir = mkdtempSync(join(tmpdir(), 'krt-events-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'containerd.sock.ttrpc');
  const logs: { msg: string; level: number }[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => logs.push(JSON.parse(s)) });
  const publisher = new EventPublisher({ address: path, namespace: 'krt', logger, retryDelayMs: 20, ...opts });
  t.teardown(() => publisher.close({ timeoutMs: 500 }));
  return { path, publisher, logs };
}

t.test('connects on the first event and sends the envelope containerd expects', async (t) => {
  const { path, publisher } = setup(t);
  const ev = await eventsServer(t, path);
  t.equal(ev.server.connectionCount, 0, 'no connection before the first event');
  const before = Date.now();
  const ok = await publisher.publish(TaskExitSchema, {
    containerId: 'c1',
    id: 'c1',
    pid: 4242,
    exitStatus: 137,
    exitedAt: { seconds: 1_700_000_000n, nanos: 5 },
  });
  t.equal(ok, true, 'publish resolves true once forwarded');
  t.equal(ev.server.connectionCount, 1, 'one connection after it');
  const { envelope, ctx, at } = ev.got[0]!;
  t.equal(envelope.namespace, 'krt');
  t.equal(envelope.topic, '/tasks/exit');
  t.equal(envelope.event?.typeUrl, 'containerd.events.TaskExit', 'bare type URL');
  const exit = fromBinary(TaskExitSchema, envelope.event!.value);
  t.same([exit.containerId, exit.id, exit.pid, exit.exitStatus, exit.exitedAt?.seconds], ['c1', 'c1', 4242, 137, 1_700_000_000n]);
  const ts = Number(envelope.timestamp!.seconds) * 1000 + envelope.timestamp!.nanos / 1e6;
  t.ok(ts >= before - 1000 && ts <= at + 1000, 'timestamp: when published (non-zero)');
  t.same(ctx.metadata.get('containerd-namespace-ttrpc'), ['krt'], 'namespace metadata');
  t.ok(ctx.deadline !== undefined && ctx.deadline - at > 0 && ctx.deadline - at <= 5000, 'a 5 s timeout on the call');
  await publisher.publish(TaskOOMSchema, { containerId: 'c1' });
  t.equal(ev.server.connectionCount, 1, 'the connection is reused');
  t.same(ev.topics(), ['/tasks/exit', '/tasks/oom']);
});

t.test('a failing event is retried in place: the exit published after it never overtakes it', async (t) => {
  const { path, publisher } = setup(t);
  const ev = await eventsServer(t, path, (e, n) => {
    if (e.topic === '/tasks/start' && n <= 2) throw new TtrpcError(GrpcCode.UNAVAILABLE, 'busy');
  });
  const start = publisher.publish(TaskStartSchema, { containerId: 'c1', pid: 7 });
  const exit = publisher.publish(TaskExitSchema, { containerId: 'c1', id: 'c1', pid: 7, exitStatus: 0 });
  t.same(await Promise.all([start, exit]), [true, true]);
  t.same(ev.topics(), ['/tasks/start', '/tasks/start', '/tasks/start', '/tasks/exit'], 'start, start (retry), start (retry), then exit');
  t.ok(ev.got[1]!.at - ev.got[0]!.at >= 15 && ev.got[2]!.at - ev.got[1]!.at >= 35, 'retry n waits n x the delay');
});

t.test('containerd not there yet: retried until it listens (a fresh connection each time)', async (t) => {
  const { path, publisher, logs } = setup(t, { retryDelayMs: 200 });
  const delivered = publisher.publish(TaskStartSchema, { containerId: 'late', pid: 1 });
  while (!logs.some((l) => /retrying/.test(l.msg))) await new Promise((r) => setTimeout(r, 10));
  const ev = await eventsServer(t, path);
  t.equal(await delivered, true);
  t.same(ev.topics(), ['/tasks/start']);
});

t.test('a lost connection is replaced for the next event', async (t) => {
  const { path, publisher } = setup(t);
  const first = await eventsServer(t, path);
  t.equal(await publisher.publish(TaskOOMSchema, { containerId: 'a' }), true);
  await first.server.close();
  const second = await eventsServer(t, path);
  t.equal(await publisher.publish(TaskOOMSchema, { containerId: 'b' }), true);
  t.same(
    second.got.map((g) => fromBinary(TaskOOMSchema, g.envelope.event!.value).containerId),
    ['b'],
  );
});

t.test('a permanent error drops the event at once; exhausted retries drop it; the queue goes on', async (t) => {
  const { path, publisher } = setup(t, { retries: 2 });
  const ev = await eventsServer(t, path, (e) => {
    const id = fromBinary(TaskOOMSchema, e.event!.value).containerId;
    if (id === 'bad') throw new TtrpcError(GrpcCode.INVALID_ARGUMENT, 'bad topic');
    if (id === 'down') throw new TtrpcError(GrpcCode.UNAVAILABLE, 'down');
  });
  const results = await Promise.all(['bad', 'down', 'ok'].map((containerId) => publisher.publish(TaskOOMSchema, { containerId })));
  t.same(results, [false, false, true]);
  t.same(
    ev.got.map((g) => fromBinary(TaskOOMSchema, g.envelope.event!.value).containerId),
    ['bad', 'down', 'down', 'down', 'ok'],
    'bad once, down 1 + 2 retries, then ok',
  );
});

t.test('close() drains the queue', async (t) => {
  const { path, publisher } = setup(t);
  const ev = await eventsServer(t, path, () => new Promise((r) => setTimeout(r, 30)));
  const all = [1, 2, 3].map((i) => publisher.publish(TaskOOMSchema, { containerId: `d${i}` }));
  await publisher.close({ timeoutMs: 60_000 });
  t.same(ev.got.length, 3, 'all three delivered before close resolved');
  t.same(await Promise.all(all), [true, true, true]);
  t.equal(await publisher.publish(TaskOOMSchema, { containerId: 'after' }), false, 'publish after close: false');
});

t.test('close() is bounded: what containerd does not take in time is dropped', async (t) => {
  const { path, publisher } = setup(t);
  const ev = await eventsServer(t, path, (_e, _n) => new Promise<void>(() => {}));
  const all = [1, 2, 3].map((i) => publisher.publish(TaskOOMSchema, { containerId: `s${i}` }));
  while (ev.got.length === 0) await new Promise((r) => setTimeout(r, 10));
  await publisher.close({ timeoutMs: 200 });
  t.same(await Promise.all(all), [false, false, false], 'every publish resolves false');
  t.equal(ev.got.length, 1, 'only the first was on the wire');
});
