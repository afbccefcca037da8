import t from 'tap';
import { connectNbd } from '../../nbd/connect.js';
import { hostileServer, u64 } from '../helpers/nbd-hostile-server.js';
import { freeze, startNbdkit } from '../helpers/nbd-servers.js';

const settleAll = (ps: Promise<unknown>[]): Promise<PromiseSettledResult<unknown>[]> => Promise.allSettled(ps);

t.test('the server killed mid-I/O: every pending request (sent or queued) fails with E_NBD, no timeout needed', async (t) => {
  const server = await startNbdkit(t, ['--filter=delay', 'memory', '64M', 'delay-read=3', 'delay-write=3']);
  // A minute per request: a test that passes cannot have waited for these deadlines.
  const c = await connectNbd(server.uri(), { maxInFlight: 16, requestTimeoutMs: 60_000 });
  const reqs: Promise<unknown>[] = [];
  for (let i = 0; i < 24; i++) reqs.push(c.read(i * 65536, Buffer.alloc(65536)));
  for (let i = 0; i < 8; i++) reqs.push(c.write(i * 65536, Buffer.alloc(65536, i)));
  t.equal(c.pending, 32, '16 on the wire, 16 queued');
  await new Promise((r) => setTimeout(r, 300));
  server.daemon.signal('SIGKILL');
  const results = await settleAll(reqs);
  const reasons = results.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'fulfilled'));
  t.same(new Set(reasons), new Set(['E_NBD']), 'all 32 failed with E_NBD');
  t.match((results[0] as PromiseRejectedResult).reason, { details: { disconnected: true } });
  t.match(await c.closed, { code: 'E_NBD' }, '`closed` reports the loss');
  t.equal(c.pending, 0);
  await t.rejects(c.read(0, Buffer.alloc(1)), { code: 'E_NBD' }, 'later requests fail at once');
});

t.test('a server that stops answering: the request deadline fails it with E_TIMEOUT and closes the connection', async (t) => {
  const server = await startNbdkit(t, ['memory', '16M']);
  const c = await connectNbd(server.uri(), { requestTimeoutMs: 1500, maxInFlight: 4 });
  await c.read(0, Buffer.alloc(4096));
  await freeze(t, server);
  const reqs = [0, 1, 2, 3, 4, 5].map((i) => c.read(i * 4096, Buffer.alloc(4096)));
  const results = await settleAll(reqs);
  const codes = results.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'fulfilled'));
  t.ok(codes.includes('E_TIMEOUT'), `the first deadline fails its request with E_TIMEOUT (${codes.join(' ')})`);
  t.ok(
    codes.every((x) => x === 'E_TIMEOUT' || x === 'E_NBD'),
    'the others fail with the connection',
  );
  t.match(await c.closed, { code: 'E_NBD', message: /timed out|did not finish/ });
});

t.test('connect and handshake have a deadline: a stopped server gives E_TIMEOUT, not a hang', async (t) => {
  const server = await startNbdkit(t, ['memory', '1M']);
  await freeze(t, server);
  await t.rejects(connectNbd(server.uri(), { connectTimeoutMs: 1000 }), {
    code: 'E_TIMEOUT',
    message: /handshake did not finish within 1000 ms/,
  });
  const ac = new AbortController();
  const p = connectNbd(server.uri(), { signal: ac.signal });
  setTimeout(() => ac.abort(new Error('test gave up')), 200);
  await t.rejects(p, { code: 'E_TIMEOUT', details: { aborted: true }, message: /test gave up/ });
});

t.test('an aborted request rejects at once; its late reply is discarded and the connection stays usable', async (t) => {
  const server = await startNbdkit(t, ['--filter=delay', 'memory', '16M', 'delay-read=500ms']);
  const c = await connectNbd(server.uri(), { maxInFlight: 1 });
  t.teardown(() => c.close());
  await c.write(0, Buffer.alloc(8192, 9));
  const ac = new AbortController();
  const target = Buffer.alloc(4096, 0x55);
  const sent = c.read(0, target, { signal: ac.signal });
  const queued = c.read(4096, Buffer.alloc(4096), { signal: ac.signal });
  const other = Buffer.alloc(4096);
  const third = c.read(4096, other);
  ac.abort(new Error('no longer needed'));
  await t.rejects(sent, { code: 'E_TIMEOUT', details: { aborted: true } }, 'the request on the wire');
  await t.rejects(queued, { code: 'E_TIMEOUT', details: { aborted: true } }, 'the queued request');
  await third;
  t.ok(
    other.every((b) => b === 9),
    'the next request gets its own data',
  );
  t.ok(
    target.every((b) => b === 0x55),
    "the aborted read's late reply did not touch the caller's buffer",
  );
  await t.rejects(c.read(0, Buffer.alloc(1), { signal: AbortSignal.abort() }), { code: 'E_TIMEOUT' }, 'an already-aborted signal');
});

t.test('an abort while a large read lands directly in the caller buffer: once rejected, the buffer is never written again', async (t) => {
  let aborted!: () => void;
  const abortedP = new Promise<void>((r) => (aborted = r));
  let more!: () => void;
  const moreP = new Promise<void>((r) => (more = r));
  const uri = await hostileServer(t, async (conn) => {
    if (!(await conn.handshakeGo(1 << 20, 1))) return;
    const r = await conn.request();
    if (!r) return;
    conn.chunk(r.cookie, 1, 1, Buffer.concat([u64(r.offset), Buffer.alloc(16384, 1)]), 8 + r.length);
    await abortedP;
    conn.send(Buffer.alloc(16384, 2));
    await moreP;
    conn.send(Buffer.alloc(r.length - 32768, 3));
    const next = await conn.request();
    if (next) conn.chunk(next.cookie, 1, 1, Buffer.concat([u64(next.offset), Buffer.alloc(next.length, 4)]));
    await conn.request();
  });
  const c = await connectNbd(uri);
  t.teardown(() => c.close());
  const target = Buffer.alloc(65536);
  const ac = new AbortController();
  const p = c.read(0, target, { signal: ac.signal });
  await new Promise((r) => setTimeout(r, 200));
  ac.abort(new Error('stop'));
  aborted();
  await t.rejects(p, { code: 'E_TIMEOUT', details: { aborted: true } });
  const snapshot = Buffer.from(target);
  more();
  const b = Buffer.alloc(4096);
  await c.read(0, b);
  t.ok(
    b.every((x) => x === 4),
    'the next read gets its own reply',
  );
  t.ok(target.equals(snapshot), 'nothing reached the aborted read buffer after its rejection');
  t.notOk(target.includes(3), 'the tail of the abandoned reply was dropped');
});
