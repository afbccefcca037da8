import t from 'tap';
import { connectNbd } from '../../nbd/connect.js';
import { probeNbd } from '../../nbd/probe.js';
import { type Conn, hostileServer, IHAVEOPT, NBDMAGIC, u16, u32, u64 } from '../helpers/nbd-hostile-server.js';

const HAS_FLAGS = 1;
const KEEP_OPEN = (): Promise<void> => new Promise(() => {});
// A minute: a rejection that names a protocol error cannot have come from these deadlines.
const SLOW = { connectTimeoutMs: 60_000, requestTimeoutMs: 60_000 };

/** An open connection to a server that completes the handshake (structured replies on) and then runs `serve`. */
async function openTo(t: { teardown(fn: () => unknown): void }, serve: (c: Conn) => Promise<void>, size = 1 << 20) {
  const uri = await hostileServer(t, async (c) => {
    if (await c.handshakeGo(size, HAS_FLAGS)) await serve(c);
  });
  return connectNbd(uri, SLOW);
}

t.test('handshake: garbage, truncation and lies are typed errors', async (t) => {
  const cases: [string, (c: Conn) => Promise<void>, { code: string; message?: RegExp; details?: Record<string, unknown> }][] = [
    [
      'not an NBD server',
      async (c) => c.send(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')),
      { code: 'E_NBD_PROTOCOL', message: /NBDMAGIC/ },
    ],
    [
      'unknown second magic',
      async (c) => c.send(NBDMAGIC, Buffer.from('IHAVEOPX'), u16(3)),
      { code: 'E_NBD_PROTOCOL', message: /unknown handshake magic/ },
    ],
    [
      'oldstyle server',
      async (c) => c.send(NBDMAGIC, u64(0x00420281861253), u64(4096), u32(1), Buffer.alloc(124)),
      { code: 'E_UNSUPPORTED', message: /oldstyle/ },
    ],
    [
      'greeting cut short, then closed',
      async (c) => {
        c.send(NBDMAGIC, IHAVEOPT.subarray(0, 3));
        c.socket.end();
      },
      { code: 'E_NBD', message: /before its greeting was complete/ },
    ],
    [
      'option reply with a bad magic',
      async (c) => {
        await c.greet();
        await c.option();
        c.send(Buffer.alloc(20, 0x41));
        await KEEP_OPEN();
      },
      { code: 'E_NBD_PROTOCOL', message: /bad option reply magic/ },
    ],
    [
      'option reply for another option',
      async (c) => {
        await c.greet();
        await c.option();
        c.optReply(3, 1);
        await KEEP_OPEN();
      },
      { code: 'E_NBD_PROTOCOL', message: /answered NBD_OPT_LIST when NBD_OPT_STRUCTURED_REPLY was asked/ },
    ],
    [
      'option reply claiming 4 GiB (header only, connection kept open)',
      async (c) => {
        await c.greet();
        await c.option();
        c.optReply(8, 1, Buffer.alloc(0), 0xffffffff);
        await KEEP_OPEN();
      },
      { code: 'E_NBD_PROTOCOL', message: /option reply of 4294967295 bytes/ },
    ],
    [
      'option reply cut short, then closed',
      async (c) => {
        await c.greet();
        await c.option();
        c.send(Buffer.from('0003e889045565a9', 'hex'), u32(8));
        c.socket.end();
      },
      { code: 'E_NBD', details: { disconnected: true } },
    ],
    [
      'GO acknowledged without NBD_INFO_EXPORT',
      async (c) => {
        await c.greet();
        for (;;) {
          const o = await c.option();
          if (!o) return;
          c.optReply(o.opt, 1);
        }
      },
      { code: 'E_NBD_PROTOCOL', message: /succeeded without NBD_INFO_EXPORT/ },
    ],
    [
      'NBD_INFO_EXPORT of the wrong length',
      async (c) => {
        await c.greet();
        for (;;) {
          const o = await c.option();
          if (!o) return;
          if (o.opt === 7) c.optReply(7, 3, Buffer.concat([u16(0), u64(4096)]));
          else c.optReply(o.opt, 1);
        }
      },
      { code: 'E_NBD_PROTOCOL', message: /NBD_REP_INFO type 0 of 10 bytes/ },
    ],
    [
      'TLS required',
      async (c) => {
        await c.greet();
        for (;;) {
          const o = await c.option();
          if (!o) return;
          c.optReply(o.opt, 0x80000005, Buffer.from('use TLS'));
        }
      },
      { code: 'E_UNSUPPORTED', message: /requires TLS/ },
    ],
  ];
  for (const [name, script, want] of cases) {
    const uri = await hostileServer(t, script);
    await t.rejects(connectNbd(uri, SLOW), want, name);
  }
});

t.test('export geometry that cannot be used is refused at connect', async (t) => {
  const cases: [string, number, [number, number, number], RegExp][] = [
    [
      'size not a multiple of the minimum block size',
      1000,
      [512, 4096, 1 << 20],
      /export size 1000 is not a multiple of the minimum block size 512/,
    ],
    ['minimum block size not a power of 2', 3 * 4096, [3, 4096, 1 << 20], /minimum block size 3/],
    ['maximum payload not a multiple of the minimum', 4096, [512, 4096, 1000], /maximum payload 1000/],
  ];
  for (const [name, size, bs, re] of cases) {
    const uri = await hostileServer(t, async (c) => {
      await c.handshakeGo(size, HAS_FLAGS, { blockSize: bs });
      await KEEP_OPEN();
    });
    await t.rejects(connectNbd(uri, SLOW), { code: 'E_NBD_PROTOCOL', message: re }, name);
  }
});

t.test('transmission: bad magic, unknown cookie and oversized or overrunning chunks fail every pending request', async (t) => {
  type Script = (c: Conn) => Promise<void>;
  const replyTo =
    (answer: (c: Conn, cookie: Buffer, offset: number, length: number) => void): Script =>
    async (c) => {
      const r = await c.request();
      if (!r) return;
      answer(c, r.cookie, r.offset, r.length);
      await KEEP_OPEN();
    };
  const data = (off: number, n: number): Buffer => Buffer.concat([u64(off), Buffer.alloc(n, 1)]);
  const cases: [string, Script, RegExp][] = [
    ['bad reply magic', replyTo((c) => c.send(Buffer.alloc(16, 0x42))), /bad reply magic 0x42424242/],
    [
      'unknown cookie',
      replyTo((c, _k, off, n) => c.chunk(Buffer.from('ffffffffffffffff', 'hex'), 1, 1, data(off, n))),
      /unknown cookie 0xffffffffffffffff/,
    ],
    [
      'a 4 GiB data chunk for a 4 KiB read (header only)',
      replyTo((c, k) => c.chunk(k, 1, 1, Buffer.alloc(0), 0xfffffff0)),
      /OFFSET_DATA of 4294967280 bytes for a 4096-byte read/,
    ],
    [
      'a data chunk overrunning the request',
      replyTo((c, k, off, n) => c.chunk(k, 1, 1, data(off + n / 2, n / 2 + 512))),
      /outside the request/,
    ],
    ['a data chunk before the request', replyTo((c, k, off, n) => c.chunk(k, 1, 1, data(off - 512, n))), /outside the request/],
    [
      'overlapping data chunks',
      replyTo((c, k, off, n) => {
        c.chunk(k, 0, 1, data(off, n / 2 + 512));
        c.chunk(k, 1, 1, data(off + n / 2, n / 2));
      }),
      /overlaps an earlier chunk/,
    ],
    [
      'a hole beyond the request',
      replyTo((c, k, off, n) => c.chunk(k, 1, 2, Buffer.concat([u64(off), u32(n + 1)]))),
      /outside the request/,
    ],
    [
      'a reply that ends without covering the read',
      replyTo((c, k, off, n) => c.chunk(k, 1, 1, data(off, n - 512))),
      /ended after 3584 bytes without an error/,
    ],
    [
      'an error chunk whose message overruns it',
      replyTo((c, k) => c.chunk(k, 1, 0x8001, Buffer.concat([u32(5), u16(500), Buffer.from('short')]))),
      /message of 500 bytes overruns/,
    ],
    ['an error chunk of 1 MiB', replyTo((c, k) => c.chunk(k, 1, 0x8001, Buffer.alloc(0), 1 << 20)), /error chunk of 1048576 bytes/],
    ['an unknown non-error chunk type', replyTo((c, k) => c.chunk(k, 1, 77, Buffer.alloc(0))), /unexpected structured reply chunk type 77/],
    [
      'a simple reply with data to a read under structured replies',
      replyTo((c, k) => c.simple(k, 0, Buffer.alloc(4096))),
      /simple reply with data/,
    ],
  ];
  for (const [name, script, re] of cases) {
    const before = process.memoryUsage().arrayBuffers;
    const c = await openTo(t, script);
    const first = c.read(4096, Buffer.alloc(4096));
    const second = c.read(8192, Buffer.alloc(4096));
    await t.rejects(first, { code: 'E_NBD_PROTOCOL', message: re }, name);
    await t.rejects(second, { code: 'E_NBD_PROTOCOL' }, `${name}: the other pending request fails too`);
    t.match(await c.closed, { code: 'E_NBD_PROTOCOL' }, `${name}: the connection is closed`);
    t.ok(process.memoryUsage().arrayBuffers - before < 32 * 1024 * 1024, `${name}: no large allocation`);
  }
});

t.test('server errors are E_NBD with the error value and message; the connection goes on', async (t) => {
  let n = 0;
  const c = await openTo(t, async (conn) => {
    for (;;) {
      const r = await conn.request();
      if (!r || r.type === 2) return;
      n++;
      if (n === 1) conn.chunk(r.cookie, 1, 0x8001, Buffer.concat([u32(5), u16(12), Buffer.from('disk on fire')]));
      else if (n === 2) conn.chunk(r.cookie, 1, 0x8002, Buffer.concat([u32(28), u16(0), u64(r.offset + 512)]));
      else if (n === 3) conn.simple(r.cookie, 1);
      else if (n === 4) {
        // Data then a hole, in reverse order, DONE on an empty NONE chunk.
        conn.chunk(r.cookie, 0, 2, Buffer.concat([u64(r.offset + 2048), u32(2048)]));
        conn.chunk(r.cookie, 0, 1, Buffer.concat([u64(r.offset), Buffer.alloc(2048, 0xab)]));
        conn.chunk(r.cookie, 1, 0, Buffer.alloc(0));
      } else conn.simple(r.cookie, 0);
    }
  });
  await t.rejects(c.read(0, Buffer.alloc(4096)), {
    code: 'E_NBD',
    message: /NBD_CMD_READ failed with EIO: disk on fire/,
    details: { errno: 5 },
  });
  await t.rejects(c.read(4096, Buffer.alloc(4096)), {
    code: 'E_NBD',
    details: { errno: 28, errnoName: 'ENOSPC', errorOffset: 4096 + 512 },
  });
  await t.rejects(c.write(0, Buffer.alloc(512)), { code: 'E_NBD', details: { errno: 1, errnoName: 'EPERM', command: 'NBD_CMD_WRITE' } });
  const b = Buffer.alloc(4096, 0x11);
  await c.read(0, b);
  t.ok(b.subarray(0, 2048).every((x) => x === 0xab) && b.subarray(2048).every((x) => x === 0), 'data and hole chunks assembled in place');
  await c.write(0, Buffer.alloc(512));
  t.pass('the connection still works after error replies');
  await c.close();
});

t.test('ESHUTDOWN: the request fails, new ones are refused, and the client sends NBD_CMD_DISC', async (t) => {
  const seen: number[] = [];
  const c = await openTo(t, async (conn) => {
    for (;;) {
      const r = await conn.request();
      if (!r) return;
      seen.push(r.type);
      if (r.type === 2) return;
      conn.chunk(r.cookie, 1, 0x8001, Buffer.concat([u32(108), u16(0)]));
    }
  });
  await t.rejects(c.read(0, Buffer.alloc(512)), { code: 'E_NBD', details: { errnoName: 'ESHUTDOWN' } });
  await t.rejects(c.read(0, Buffer.alloc(512)), { code: 'E_NBD', message: /shutting down/ });
  await c.closed;
  t.same(seen, [0, 2], 'the server got the read, then NBD_CMD_DISC');
});

t.test('probe survives a hostile LIST answer with a typed error', async (t) => {
  const uri = await hostileServer(t, async (c) => {
    await c.greet();
    await c.option();
    c.optReply(3, 2, Buffer.concat([u32(100), Buffer.from('abc')]));
    await KEEP_OPEN();
  });
  await t.rejects(probeNbd(uri, { timeoutMs: 60_000 }), { code: 'E_NBD_PROTOCOL', message: /name length 100 exceeds the reply/ });
});
