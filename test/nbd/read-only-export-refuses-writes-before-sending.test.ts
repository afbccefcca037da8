import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectNbd } from '../../nbd/connect.js';
import { hostileServer, type Request } from '../helpers/nbd-hostile-server.js';
import { startNbdkit, tempDir } from '../helpers/nbd-servers.js';

t.test('nbdkit -r: the export is read-only; write, trim and zeroes fail with E_NBD_READ_ONLY, reads work', async (t) => {
  const dir = tempDir(t, 'nbd-ro');
  const image = join(dir, 'disk.img');
  const content = randomBytes(1024 * 1024);
  writeFileSync(image, content);
  const server = await startNbdkit(t, ['-r', 'file', image]);
  const c = await connectNbd(server.uri());
  t.teardown(() => c.close());
  t.ok(c.info.flags & 2, 'NBD_FLAG_READ_ONLY is set');
  await t.rejects(c.write(0, Buffer.alloc(512, 1)), {
    code: 'E_NBD_READ_ONLY',
    message: /read-only: NBD_CMD_WRITE refused \(nothing was sent\)/,
  });
  await t.rejects(c.write(0, Buffer.alloc(512, 1), { fua: true }), { code: 'E_NBD_READ_ONLY' }, 'also with FUA');
  await t.rejects(c.trim(0, 4096), { code: 'E_NBD_READ_ONLY', details: { command: 'NBD_CMD_TRIM' } });
  await t.rejects(c.writeZeroes(0, 4096), { code: 'E_NBD_READ_ONLY', details: { command: 'NBD_CMD_WRITE_ZEROES' } });
  const back = Buffer.alloc(content.length);
  await c.read(0, back);
  t.ok(back.equals(content), 'reads return the file');
  t.ok(readFileSync(image).equals(content), 'the file is unchanged');
  t.equal(c.pending, 0);
});

t.test('nothing reaches the server: the first request a recording server sees is the read after the refusals', async (t) => {
  const seen: Request[] = [];
  const uri = await hostileServer(t, async (conn) => {
    // READ_ONLY | HAS_FLAGS, plus SEND_TRIM and SEND_WRITE_ZEROES so only read-only can refuse them.
    if (!(await conn.handshakeGo(65536, 0x1 | 0x2 | 0x20 | 0x40 | 0x8))) return;
    for (;;) {
      const r = await conn.request();
      if (!r) return;
      seen.push(r);
      if (r.type === 0) conn.chunk(r.cookie, 1, 1, Buffer.concat([Buffer.alloc(8), Buffer.alloc(r.length, 7)]));
      else if (r.type === 2) return;
      else conn.simple(r.cookie, 1);
    }
  });
  const c = await connectNbd(uri);
  await t.rejects(c.write(0, Buffer.alloc(4096)), { code: 'E_NBD_READ_ONLY' });
  await t.rejects(c.trim(0, 4096), { code: 'E_NBD_READ_ONLY' });
  await t.rejects(c.writeZeroes(0, 4096, { noHole: true }), { code: 'E_NBD_READ_ONLY' });
  const b = Buffer.alloc(100);
  await c.read(0, b);
  t.ok(
    b.every((x) => x === 7),
    'the read is answered',
  );
  await c.close();
  t.same(
    seen.map((r) => r.type),
    [0, 2],
    'the server saw only NBD_CMD_READ and NBD_CMD_DISC',
  );
});
