import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { pino } from 'pino';
import { StateResponseSchema, Task } from '../../shim/generated/containerd/runtime/v2/task/shim_pb.js';
import { TtrpcClient } from '../../ttrpc/client.js';
import { encodeHeader, type Frame, FrameReader, MessageType } from '../../ttrpc/frame.js';
import { RequestSchema, ResponseSchema } from '../../ttrpc/generated/ttrpc/request_pb.js';

/** A scripted peer: records the Requests it gets and lets the test answer, stay silent or hang up. */
async function scriptedPeer(
  t: Test,
): Promise<{ path: string; requests: Frame[]; conn(): Promise<Socket>; answer(s: Socket, id: number, id2?: string): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'krt-ttrpc-'));
  const path = join(dir, 'peer.sock');
  const requests: Frame[] = [];
  const conns: Socket[] = [];
  const waiters: ((s: Socket) => void)[] = [];
  const server: Server = createServer((s) => {
    const reader = new FrameReader({ frame: (f) => requests.push({ ...f, data: Buffer.from(f.data) }), oversized: () => {} });
    s.on('data', (d: Buffer) => reader.push(d));
    s.on('error', () => {});
    conns.push(s);
    waiters.shift()?.(s);
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.teardown(async () => {
    for (const s of conns) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    path,
    requests,
    conn: () => (conns.length > 0 ? Promise.resolve(conns.at(-1)!) : new Promise((r) => waiters.push(r))),
    answer: (s, id, stateId = 'answer') => {
      const payload = toBinary(StateResponseSchema, create(StateResponseSchema, { id: stateId }));
      const body = toBinary(ResponseSchema, create(ResponseSchema, { payload }));
      s.write(Buffer.concat([encodeHeader({ length: body.length, streamId: id, type: MessageType.RESPONSE, flags: 0 }), body]));
    },
  };
}

const until = async (cond: () => boolean): Promise<void> => {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
};

t.test('EOF from the peer fails every pending call with E_TTRPC_CLOSED, and later calls at once', async (t) => {
  const peer = await scriptedPeer(t);
  const client = await TtrpcClient.connect(peer.path);
  const calls = [1, 2, 3].map((i) => client.call(Task.method.wait, { id: `w${i}` }));
  await until(() => peer.requests.length === 3);
  (await peer.conn()).end();
  for (const c of calls) await t.rejects(c, { name: 'TtrpcError', code: 'E_TTRPC_CLOSED', grpcCode: 14, message: /ttrpc: closed/ });
  t.ok(client.closed);
  await t.rejects(client.call(Task.method.state, { id: 'late' }), { code: 'E_TTRPC_CLOSED' });
});

t.test('ECONNRESET (the peer closes with our request unread) fails pending calls with E_TTRPC_CLOSED', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-ttrpc-'));
  const path = join(dir, 'rst.sock');
  // pauseOnConnect: the peer never reads, so the request stays in its receive queue and closing
  // the socket makes the kernel reset the connection.
  const conns: Socket[] = [];
  const server = createServer({ pauseOnConnect: true }, (s) => conns.push(s));
  await new Promise<void>((r) => server.listen(path, r));
  t.teardown(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });
  const client = await TtrpcClient.connect(path);
  const call = client.call(Task.method.wait, { id: 'w' });
  await until(() => conns.length === 1);
  await new Promise((r) => setImmediate(r)); // a unix socket write lands in the peer's queue at once
  conns[0]!.destroy();
  await t.rejects(call, { code: 'E_TTRPC_CLOSED', grpcCode: 14, message: /ECONNRESET/ });
});

t.test('close() fails pending calls with E_TTRPC_CLOSED', async (t) => {
  const peer = await scriptedPeer(t);
  const client = await TtrpcClient.connect(peer.path);
  const call = client.call(Task.method.wait, { id: 'w' });
  client.close();
  await t.rejects(call, { code: 'E_TTRPC_CLOSED', message: /closed by this client/ });
});

t.test('connecting where nobody listens: E_TTRPC_CLOSED with grpcCode 14 (UNAVAILABLE)', async (t) => {
  await t.rejects(TtrpcClient.connect('/nonexistent/krt-ttrpc.sock'), { code: 'E_TTRPC_CLOSED', grpcCode: 14, message: /ENOENT/ });
});

t.test('ids are odd from 1 by 2; replies match by id; a reply for an unknown id is dropped with a log line', async (t) => {
  const peer = await scriptedPeer(t);
  const lines: { level: number; msg: string; streamId?: number }[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const client = await TtrpcClient.connect(peer.path, { logger });
  t.teardown(() => client.close());
  const a = client.call(Task.method.state, { id: 'a' });
  const b = client.call(Task.method.state, { id: 'b' });
  const c = client.call(Task.method.state, { id: 'c' });
  await until(() => peer.requests.length === 3);
  t.same(
    peer.requests.map((r) => r.streamId),
    [1, 3, 5],
  );
  t.same(
    peer.requests.map((r) => fromBinary(RequestSchema, r.data).method),
    ['State', 'State', 'State'],
  );
  const s = await peer.conn();
  peer.answer(s, 99, 'stray');
  peer.answer(s, 5, 'for-c');
  peer.answer(s, 1, 'for-a');
  t.equal((await c).id, 'for-c');
  t.equal((await a).id, 'for-a');
  t.ok(
    lines.some((l) => l.level === 40 && l.streamId === 99 && /unknown stream/.test(l.msg)),
    'warned about stream 99',
  );
  peer.answer(s, 3, 'for-b');
  t.equal((await b).id, 'for-b', 'the call the stray reply did not satisfy is still answered');
});

t.test('a per-call timeout is sent as timeout_nano and enforced here; its late reply is dropped quietly', async (t) => {
  const peer = await scriptedPeer(t);
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const client = await TtrpcClient.connect(peer.path, { logger });
  t.teardown(() => client.close());
  await t.rejects(client.call(Task.method.state, { id: 'slow' }, { timeoutMs: 150 }), { code: 'E_TIMEOUT', grpcCode: 4 });
  t.equal(fromBinary(RequestSchema, peer.requests[0]!.data).timeoutNano, 150_000_000n, 'timeout_nano = 150 ms');
  const s = await peer.conn();
  peer.answer(s, 1, 'too-late');
  const next = client.call(Task.method.state, { id: 'next' });
  await until(() => peer.requests.length === 2);
  peer.answer(s, 3, 'next-answer');
  t.equal((await next).id, 'next-answer', 'the connection is still usable');
  t.notOk(
    lines.some((l) => l.level >= 40),
    'no warning for the abandoned call',
  );
  t.ok(
    lines.some((l) => /abandoned/.test(l.msg)),
    'a debug line instead',
  );
});

t.test('an AbortSignal cancels the call: grpcCode 1', async (t) => {
  const peer = await scriptedPeer(t);
  const client = await TtrpcClient.connect(peer.path);
  t.teardown(() => client.close());
  const ac = new AbortController();
  const call = client.call(Task.method.wait, { id: 'w' }, { signal: ac.signal });
  ac.abort();
  await t.rejects(call, { code: 'E_TTRPC', grpcCode: 1, message: /cancelled/ });
});
