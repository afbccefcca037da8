import t from 'tap';
import { randomBytes } from 'node:crypto';
import { connectNbd } from '../../nbd/connect.js';
import { formatProbe, probeNbd } from '../../nbd/probe.js';
import { hostileServer, u16, u64 } from '../helpers/nbd-hostile-server.js';
import { startNbdkit } from '../helpers/nbd-servers.js';

t.test('nbdkit --no-sr: simple replies carry the read data', async (t) => {
  const server = await startNbdkit(t, ['--no-sr', 'memory', '8M']);
  const c = await connectNbd(server.uri());
  t.teardown(() => c.close());
  t.equal(c.structured, false, 'structured replies were refused, not fatal');
  const data = randomBytes(3 * 1024 * 1024);
  await c.write(4096, data);
  const back = Buffer.alloc(data.length);
  await Promise.all([0, 1, 2].map((i) => c.read(4096 + i * 1024 * 1024, back.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024))));
  t.ok(back.equals(data), 'concurrent simple-reply reads are matched and byte-exact');
  const p = await probeNbd(server.uri());
  t.equal(p.structuredReplies, false);
  t.notOk(p.flagNames.includes('SEND_DF'), 'no SEND_DF without structured replies');
});

t.test('nbdkit --mask-handshake=0: no fixed newstyle, so NBD_OPT_EXPORT_NAME with the 124 zero bytes', async (t) => {
  const server = await startNbdkit(t, ['--mask-handshake=0', 'memory', '1M']);
  const c = await connectNbd(server.uri());
  t.teardown(() => c.close());
  t.equal(c.info.via, 'NBD_OPT_EXPORT_NAME');
  t.equal(c.info.size, 1024 * 1024);
  await c.write(0, Buffer.alloc(4096, 3));
  const b = Buffer.alloc(4096);
  await c.read(0, b);
  t.ok(
    b.every((x) => x === 3),
    'I/O works after the old handshake',
  );
  const p = await probeNbd(server.uri());
  t.equal(p.handshake, 'newstyle');
  t.equal(p.exports, null);
  t.match(formatProbe(p).join('\n'), /exports: not listed \(the server does not speak fixed newstyle/);
});

t.test('a server that answers NBD_OPT_GO and NBD_OPT_INFO with NBD_REP_ERR_UNSUP is opened with NBD_OPT_EXPORT_NAME', async (t) => {
  const seen: number[] = [];
  const uri = await hostileServer(t, async (c) => {
    await c.greet(1); // fixed newstyle, but no NO_ZEROES: the 124 zero bytes follow the export data
    for (;;) {
      const o = await c.option();
      if (!o) return;
      seen.push(o.opt);
      if (o.opt === 1) {
        c.send(u64(65536), u16(1 | 4), Buffer.alloc(124));
        break;
      }
      if (o.opt === 3)
        c.optReply(3, 0x80000002); // LIST refused by policy
      else c.optReply(o.opt, 0x80000001);
    }
    const r = await c.request();
    if (r?.type === 3) c.simple(r.cookie, 0);
    await c.request();
  });
  const c = await connectNbd(uri);
  t.equal(c.info.via, 'NBD_OPT_EXPORT_NAME');
  t.equal(c.info.size, 65536);
  await c.flush();
  await c.close();
  t.same(seen, [8, 7, 1], 'STRUCTURED_REPLY, GO, then EXPORT_NAME');
  const p = await probeNbd(uri);
  t.equal(p.listRefused, 'NBD_REP_ERR_POLICY', 'the probe reports why there is no list');
  t.equal(p.infoVia, 'NBD_OPT_EXPORT_NAME');
});
