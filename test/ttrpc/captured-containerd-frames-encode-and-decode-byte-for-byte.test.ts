import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import {
  ConnectRequestSchema,
  ConnectResponseSchema,
  ShutdownRequestSchema,
  Task,
  WaitResponseSchema,
} from '../../shim/generated/containerd/runtime/v2/task/shim_pb.js';
import { TtrpcClient } from '../../ttrpc/client.js';
import { decodeHeader, encodeHeader, HEADER_LENGTH, MessageType } from '../../ttrpc/frame.js';
import { RequestSchema, ResponseSchema } from '../../ttrpc/generated/ttrpc/request_pb.js';
import { TtrpcServer } from '../../ttrpc/server.js';

/**
 * Frames captured between containerd 1.6.20 and Debian's runc shim (the research note's §2.7 and
 * §2.2, recorded on this kind of host with a relay that decoded every frame). The Shutdown
 * request's elided middle is the same service/payload encoding as Connect's; its length (0x2f)
 * confirms it.
 */
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const str = (s: string): string => Buffer.from(s).toString('hex');
const CAPTURED = {
  connectReq: hex(`00000028 00000003 01 00 0a17 ${str('containerd.task.v2.Task')} 1207 ${str('Connect')} 1a04 0a02 ${str('t1')}`),
  connectResp: hex('0000000a 00000003 02 00 1208 08e4bb01 10f9bb01'),
  waitResp: hex('0000000f 00000009 02 00 120d 120b 08cff7bcd806 10b5e89748'),
  shutdownReq: hex(
    `0000002f 00000011 01 00 0a17 ${str('containerd.task.v2.Task')} 1208 ${str('Shutdown')} 1a04 0a02 ${str('t1')} 20 8398c0960b`,
  ),
  forwardResp: hex('00000000 00000001 02 00'),
  killNotFound: hex(`00000029 0000000f 02 00 0a27 0805 1223 ${str('process already finished: not found')}`),
};

function frame(streamId: number, type: number, body: Uint8Array): Buffer {
  return Buffer.concat([encodeHeader({ length: body.length, streamId, type, flags: 0 }), body]);
}

t.test('the generated messages encode to the captured frames', async (t) => {
  const req = (method: string, payload: Uint8Array, timeoutNano = 0n): Uint8Array =>
    toBinary(RequestSchema, create(RequestSchema, { service: 'containerd.task.v2.Task', method, payload, timeoutNano }));
  const resp = (payload: Uint8Array): Uint8Array => toBinary(ResponseSchema, create(ResponseSchema, { payload }));
  t.same(
    frame(3, MessageType.REQUEST, req('Connect', toBinary(ConnectRequestSchema, create(ConnectRequestSchema, { id: 't1' })))),
    CAPTURED.connectReq,
    'Connect request',
  );
  t.same(
    frame(
      3,
      MessageType.RESPONSE,
      resp(toBinary(ConnectResponseSchema, create(ConnectResponseSchema, { shimPid: 24036, taskPid: 24057 }))),
    ),
    CAPTURED.connectResp,
    'Connect response',
  );
  const exitedAt = { seconds: 1796160463n, nanos: 151385141 };
  t.same(
    frame(9, MessageType.RESPONSE, resp(toBinary(WaitResponseSchema, create(WaitResponseSchema, { exitStatus: 0, exitedAt })))),
    CAPTURED.waitResp,
    'Wait response (exit status 0 omitted, timestamp present)',
  );
  t.same(
    frame(
      17,
      MessageType.REQUEST,
      req('Shutdown', toBinary(ShutdownRequestSchema, create(ShutdownRequestSchema, { id: 't1' })), 2999979011n),
    ),
    CAPTURED.shutdownReq,
    'Shutdown request with timeout_nano',
  );
  t.same(
    frame(1, MessageType.RESPONSE, resp(toBinary(EmptySchema, create(EmptySchema)))),
    CAPTURED.forwardResp,
    'Empty response: zero bytes',
  );
  t.same(
    frame(
      15,
      MessageType.RESPONSE,
      toBinary(ResponseSchema, create(ResponseSchema, { status: { code: 5, message: 'process already finished: not found' } })),
    ),
    CAPTURED.killNotFound,
    'error response: status, no payload',
  );
});

t.test('the captured frames decode to the messages containerd meant', async (t) => {
  const h = decodeHeader(CAPTURED.shutdownReq);
  t.same(h, { length: 0x2f, streamId: 17, type: MessageType.REQUEST, flags: 0 });
  const r = fromBinary(RequestSchema, CAPTURED.shutdownReq.subarray(HEADER_LENGTH));
  t.equal(r.service, 'containerd.task.v2.Task');
  t.equal(r.method, 'Shutdown');
  t.equal(r.timeoutNano, 2999979011n, 'timeout_nano about 3 s');
  t.equal(fromBinary(ShutdownRequestSchema, r.payload).id, 't1');
  const w = fromBinary(WaitResponseSchema, fromBinary(ResponseSchema, CAPTURED.waitResp.subarray(HEADER_LENGTH)).payload);
  t.equal(w.exitStatus, 0);
  t.equal(w.exitedAt?.seconds, 1796160463n);
  const e = fromBinary(ResponseSchema, CAPTURED.killNotFound.subarray(HEADER_LENGTH));
  t.same([e.status?.code, e.status?.message, e.payload.length], [5, 'process already finished: not found', 0]);
});

/** Write `bytes` on a raw connection and collect what comes back until `want` bytes arrived. */
function exchange(path: string, bytes: Buffer, want: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let got = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= want) {
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', reject);
    s.write(bytes);
  });
}

t.test("our server answers containerd's captured Connect request with the captured bytes", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-ttrpc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 's.sock');
  const server = new TtrpcServer().register(Task, {
    connect: (req) => (req.id === 't1' ? { shimPid: 24036, taskPid: 24057 } : {}),
    shutdown: () => undefined,
  });
  await server.listen({ path });
  t.teardown(() => server.close());
  t.same(await exchange(path, CAPTURED.connectReq, CAPTURED.connectResp.length), CAPTURED.connectResp, 'Connect');
  const shutdownAnswer = frame(17, MessageType.RESPONSE, new Uint8Array(0));
  t.same(await exchange(path, CAPTURED.shutdownReq, HEADER_LENGTH), shutdownAnswer, 'Shutdown -> empty Response');
});

t.test("our client reads the runc shim's captured answers", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-ttrpc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'replay.sock');
  // A peer that answers each request with the next captured response, re-addressed to its stream id.
  const answers = [CAPTURED.connectResp, CAPTURED.waitResp, CAPTURED.killNotFound, CAPTURED.forwardResp];
  const seen: Buffer[] = [];
  const replay = createServer((s: Socket) => {
    s.on('data', (d: Buffer) => {
      seen.push(d);
      const a = Buffer.from(answers.shift()!);
      a.writeUInt32BE(d.readUInt32BE(4), 4);
      s.write(a);
    });
  });
  await new Promise<void>((r) => replay.listen(path, r));
  t.teardown(() => new Promise<void>((r) => replay.close(() => r())));
  const client = await TtrpcClient.connect(path);
  t.teardown(() => client.close());
  const c = await client.call(Task.method.connect, { id: 't1' });
  t.same([c.shimPid, c.taskPid], [24036, 24057], 'Connect response');
  t.same(seen[0], frame(1, MessageType.REQUEST, CAPTURED.connectReq.subarray(HEADER_LENGTH)), "containerd's Connect bytes, on stream 1");
  const w = await client.call(Task.method.wait, { id: 't1' });
  t.equal(w.exitedAt?.nanos, 151385141, 'Wait response');
  t.equal(seen[1]!.readUInt32BE(4), 3, 'second request: stream 3');
  await t.rejects(client.call(Task.method.kill, { id: 't1', signal: 9 }), {
    name: 'TtrpcError',
    code: 'E_TTRPC',
    grpcCode: 5,
    message: 'process already finished: not found',
  });
  t.equal(seen[2]!.readUInt32BE(4), 5, 'third request: stream 5');
  t.same(await client.call(Task.method.shutdown, { id: 't1' }), create(EmptySchema), 'empty Response -> Empty');
});
