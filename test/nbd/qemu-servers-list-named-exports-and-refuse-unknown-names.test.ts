import t from 'tap';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectNbd } from '../../nbd/connect.js';
import { probeNbd } from '../../nbd/probe.js';
import { startQemuNbd, startQemuStorageDaemon, tempDir } from '../helpers/nbd-servers.js';

t.test('qemu-nbd -x NAME -D TEXT: NBD_OPT_LIST lists the export; GO opens it by name; block sizes are advertised', async (t) => {
  const dir = tempDir(t, 'nbd-qemu');
  const image = join(dir, 'disk.raw');
  const content = randomBytes(2 * 1024 * 1024);
  writeFileSync(image, content);
  const server = await startQemuNbd(t, image, 'vol-a', ['-D', 'the first volume']);
  const p = await probeNbd(server.uri('vol-a'));
  t.same(p.exports, [{ name: 'vol-a', description: 'the first volume' }], 'LIST: the one export with its description');
  t.equal(p.size, content.length);
  t.equal(p.description, 'the first volume', 'NBD_INFO_DESCRIPTION');
  t.equal(p.infoVia, 'NBD_OPT_INFO');
  t.equal(p.blockSize.advertised, true, 'qemu-nbd sends NBD_INFO_BLOCK_SIZE');
  t.ok(p.blockSize.minimum >= 1 && p.blockSize.preferred >= p.blockSize.minimum && p.blockSize.maximum >= p.blockSize.preferred);
  t.ok(p.flagNames.includes('SEND_FLUSH'), `flags decoded: ${p.flagNames.join(' ')}`);

  const c = await connectNbd(server.uri('vol-a'));
  const b = Buffer.alloc(65536);
  await c.read(65536, b);
  t.ok(b.equals(content.subarray(65536, 131072)), 'data of the named export');
  await c.close();

  await t.rejects(connectNbd(server.uri('no-such-export')), {
    code: 'E_NBD',
    message: /export "no-such-export" does not exist/,
    details: { reply: 'NBD_REP_ERR_UNKNOWN', option: 'NBD_OPT_GO' },
  });
  await t.rejects(probeNbd(server.uri('no-such-export')), {
    code: 'E_NBD',
    details: { reply: 'NBD_REP_ERR_UNKNOWN', option: 'NBD_OPT_INFO' },
  });
  // The server is still fine after the refusals (ABORT was sent, not a broken stream).
  const again = await probeNbd(server.uri('vol-a'));
  t.equal(again.size, content.length, 'the server still answers');
});

t.test('qemu-storage-daemon with two exports: LIST returns both, each opens with its own size and mode', async (t) => {
  const dir = tempDir(t, 'nbd-qsd');
  const a = join(dir, 'a.raw');
  const b = join(dir, 'b.raw');
  writeFileSync(a, Buffer.alloc(1024 * 1024, 0xaa));
  writeFileSync(b, Buffer.alloc(3 * 1024 * 1024, 0xbb));
  const server = await startQemuStorageDaemon(t, [
    { name: 'alpha', image: a, description: 'first', writable: true },
    { name: 'beta', image: b },
  ]);
  const p = await probeNbd(server.uri('beta'));
  t.same(
    [...(p.exports ?? [])].sort((x, y) => x.name.localeCompare(y.name)),
    [{ name: 'alpha', description: 'first' }, { name: 'beta' }],
    'both exports listed',
  );
  t.equal(p.size, 3 * 1024 * 1024);
  t.equal(p.readOnly, true, 'beta is read-only (writable=off)');
  const ca = await connectNbd(server.uri('alpha'));
  t.equal(ca.info.size, 1024 * 1024);
  t.equal(ca.info.flags & 2, 0, 'alpha is writable');
  await ca.write(0, Buffer.alloc(512, 1));
  await ca.close();
  const cb = await connectNbd(server.uri('beta'));
  await t.rejects(cb.write(0, Buffer.alloc(512)), { code: 'E_NBD_READ_ONLY' });
  await cb.close();
});
