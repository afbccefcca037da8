import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { StateRequestSchema, StateResponseSchema, Task } from '../../shim/generated/containerd/runtime/v2/task/shim_pb.js';
import { TtrpcClient } from '../../ttrpc/client.js';
import { MessageType } from '../../ttrpc/frame.js';
import { RequestSchema } from '../../ttrpc/generated/ttrpc/request_pb.js';
import { TtrpcServer } from '../../ttrpc/server.js';
import { rawPeer } from './helpers/raw-peer.js';
import { testTaskService } from './helpers/task-service.js';

const TASK = 'containerd.task.v2.Task';

function request(method: string, payload: Uint8Array, timeoutNano = 0n): Uint8Array {
  return toBinary(RequestSchema, create(RequestSchema, { service: TASK, method, payload, timeoutNano }));
}
const stateReq = (id: string): Uint8Array => toBinary(StateRequestSchema, create(StateRequestSchema, { id }));

t.test('status codes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-ttrpc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 's.sock');
  const svc = testTaskService();
  const { checkpoint: _omitted, ...impl } = svc.impl;
  const server = new TtrpcServer().register(Task, impl);
  await server.listen({ path });
  t.teardown(() => server.close({ timeoutMs: 1000 }));
  const client = await TtrpcClient.connect(path);
  t.teardown(() => client.close());

  t.test('unknown service and method: 12 with the names, as Go says them', async (t) => {
    await t.rejects(client.callRaw('nope.v1.Nope', 'State', new Uint8Array()), {
      code: 'E_TTRPC',
      grpcCode: 12,
      message: 'service nope.v1.Nope',
    });
    await t.rejects(client.callRaw(TASK, 'Teleport', new Uint8Array()), { code: 'E_TTRPC', grpcCode: 12, message: 'method Teleport' });
    await t.rejects(
      client.call(Task.method.checkpoint, { id: 'x' }),
      { grpcCode: 12, message: 'method Checkpoint' },
      'a method without a handler',
    );
  });

  t.test('a payload that does not decode: 3', async (t) => {
    await t.rejects(client.callRaw(TASK, 'State', Buffer.from([0x0a, 0xff, 0xff])), {
      code: 'E_TTRPC',
      grpcCode: 3,
      message: /unmarshalling payload/,
    });
    const peer = await rawPeer(path);
    peer.send(1, MessageType.REQUEST, Buffer.from([0xff, 0xff, 0xff, 0x01]));
    const r = await peer.answer(1);
    t.same([r.status?.code, /unmarshal request error/.test(r.status?.message ?? '')], [3, true], 'a Request that does not decode: 3');
    peer.send(3, MessageType.REQUEST, request('State', stateReq('after')));
    t.equal(fromBinary(StateResponseSchema, (await peer.answer(3)).payload).id, 'after', 'the connection still serves');
    peer.socket.destroy();
  });

  t.test('an even stream id is rejected with 3 on that id', async (t) => {
    const peer = await rawPeer(path);
    peer.send(2, MessageType.REQUEST, request('State', stateReq('even')));
    const r = await peer.answer(2);
    t.same([r.status?.code, r.status?.message, r.payload.length], [3, 'StreamID must be odd for client initiated streams', 0]);
    peer.socket.destroy();
  });

  t.test('frames that are not requests are ignored', async (t) => {
    const peer = await rawPeer(path);
    peer.send(1, MessageType.DATA, request('State', stateReq('data')));
    peer.send(3, MessageType.RESPONSE, request('State', stateReq('resp')));
    peer.send(5, MessageType.REQUEST, request('State', stateReq('req')));
    t.equal(fromBinary(StateResponseSchema, (await peer.answer(5)).payload).id, 'req');
    const early = await Promise.race([peer.answer(1), peer.answer(3), new Promise((r) => setImmediate(() => r('none')))]);
    t.equal(early, 'none', 'no answer on the Data or Response streams');
    peer.socket.destroy();
  });

  t.test('a 5 MiB request: RESOURCE_EXHAUSTED on its stream, and the same connection serves on', async (t) => {
    const peer = await rawPeer(path);
    const big = request('Exec', Buffer.alloc(5 << 20, 7));
    peer.send(1, MessageType.REQUEST, big);
    peer.send(3, MessageType.REQUEST, request('State', stateReq('next')));
    const r = await peer.answer(1);
    t.equal(r.status?.code, 8, 'code 8');
    t.match(r.status?.message, `message length ${big.length} exceed maximum message size of 4194304`);
    t.equal(fromBinary(StateResponseSchema, (await peer.answer(3)).payload).id, 'next', 'the next request on the connection is answered');
    peer.socket.destroy();

    await t.rejects(
      client.call(Task.method.exec, { id: 'x', spec: { typeUrl: 'big', value: Buffer.alloc(5 << 20) } }),
      {
        code: 'E_TTRPC',
        grpcCode: 8,
      },
      'our client refuses to send it (as ttrpc 1.2 does)',
    );
    t.equal((await client.call(Task.method.state, { id: 'then' })).id, 'then', 'and its connection serves on');
    await t.rejects(
      client.call(Task.method.stats, { id: String(5 << 20) }),
      { grpcCode: 8, message: /response length/ },
      'an answer over 4 MiB: 8',
    );
    t.equal((await client.call(Task.method.stats, { id: String(1 << 20) })).stats?.value.length, 1 << 20, 'a 1 MiB answer passes');
  });

  t.test('timeout_nano expiry: DEADLINE_EXCEEDED, and the handler sees its signal abort', async (t) => {
    const peer = await rawPeer(path);
    peer.send(1, MessageType.REQUEST, request('Pause', new Uint8Array(), 50_000_000n));
    const r = await peer.answer(1);
    t.same([r.status?.code, r.status?.message], [4, 'context deadline exceeded']);
    t.match(svc.aborts.at(-1), { code: 'E_TIMEOUT', grpcCode: 4 }, 'the AbortSignal fired with the deadline as its reason');
    peer.send(3, MessageType.REQUEST, request('Pause', new Uint8Array(), -1n));
    t.equal((await peer.answer(3)).status?.code, 4, 'an already expired deadline (negative timeout_nano) answers 4 at once');
    peer.socket.destroy();
  });

  t.test('metadata reaches the handler, repeated keys in order', async (t) => {
    const s = await client.call(Task.method.state, { id: 'md' }, { metadata: { 'containerd-namespace-ttrpc': 'krt', k: ['1', '2'] } });
    t.same(JSON.parse(s.bundle), { 'containerd-namespace-ttrpc': ['krt'], k: ['1', '2'] });
  });

  t.test('handler errors become statuses through the one mapping table', async (t) => {
    const cases: [string, number, RegExp][] = [
      ['E_INVALID_ARGUMENT', 3, /^E_INVALID_ARGUMENT: test failure/],
      ['E_SANDBOX_NOT_FOUND', 5, /^E_SANDBOX_NOT_FOUND: /],
      ['E_LINK_NOT_FOUND', 5, /^E_LINK_NOT_FOUND: /],
      ['E_SANDBOX_EXISTS', 6, /^E_SANDBOX_EXISTS: /],
      ['E_UNSUPPORTED', 12, /^E_UNSUPPORTED: /],
      ['E_TIMEOUT', 4, /^E_TIMEOUT: /],
      ['E_INTERNAL', 13, /^E_INTERNAL: /],
      ['E_QMP', 2, /^E_QMP: /],
      ['status:9', 9, /^test status 9$/],
      ['plain', 2, /^plain failure$/],
    ];
    for (const [id, code, message] of cases) {
      await t.rejects(client.call(Task.method.delete, { id }), { code: 'E_TTRPC', grpcCode: code, message }, `${id} -> ${code}`);
    }
  });
});
