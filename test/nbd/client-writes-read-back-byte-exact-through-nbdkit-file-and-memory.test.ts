import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectNbd } from '../../nbd/connect.js';
import { startNbdkit, tempDir } from '../helpers/nbd-servers.js';

const MiB = 1024 * 1024;

t.test('file plugin: writes land byte-exact in the backing file; trim, zeroes and flush behave', async (t) => {
  const dir = tempDir(t, 'nbd-file');
  const image = join(dir, 'disk.img');
  const initial = randomBytes(8 * MiB);
  writeFileSync(image, initial);
  const server = await startNbdkit(t, ['file', image]);
  const c = await connectNbd(server.uri());
  t.teardown(() => c.close());
  t.equal(c.info.size, 8 * MiB, 'size from NBD_INFO_EXPORT');
  t.equal(c.info.via, 'NBD_OPT_GO');
  t.ok(c.structured, 'structured replies negotiated');

  // Several sizes and alignments, concurrently, each random data.
  const writes = [
    { offset: 0, data: randomBytes(4096) },
    { offset: 12345, data: randomBytes(100_000) },
    { offset: 3 * MiB + 17, data: randomBytes(MiB + 3) },
    { offset: 8 * MiB - 512, data: randomBytes(512) },
  ];
  await Promise.all(writes.map((w) => c.write(w.offset, w.data)));
  const fua = { offset: 6 * MiB, data: randomBytes(4096) };
  await c.write(fua.offset, fua.data, { fua: true });
  await c.flush();
  const expected = Buffer.from(initial);
  for (const w of [...writes, fua]) w.data.copy(expected, w.offset);
  const onDisk = readFileSync(image);
  t.ok(onDisk.equals(expected), 'the backing file holds every write (FUA one included) byte-exact, and nothing else changed');

  // Reads through the client agree with the file (in pieces and in one 8 MiB read).
  const whole = Buffer.alloc(8 * MiB);
  await c.read(0, whole);
  t.ok(whole.equals(onDisk), 'an 8 MiB read returns the file');
  const piece = Buffer.alloc(777);
  await c.read(3 * MiB + 1000, piece);
  t.ok(piece.equals(onDisk.subarray(3 * MiB + 1000, 3 * MiB + 1777)), 'an unaligned read returns the right bytes');

  t.ok(c.info.flags & (1 << 6), 'file plugin offers WRITE_ZEROES');
  await c.writeZeroes(MiB, MiB, { noHole: true });
  await c.writeZeroes(2 * MiB, 64 * 1024);
  await c.trim(4 * MiB, MiB);
  await c.flush();
  const z = Buffer.alloc(MiB + 64 * 1024, 0xff);
  await c.read(MiB, z);
  t.ok(
    z.every((b) => b === 0),
    'written zeroes read back as zeroes through the client',
  );
  const file = readFileSync(image);
  t.ok(
    file.subarray(MiB, 2 * MiB + 64 * 1024).every((b) => b === 0),
    'and are zeroes in the backing file',
  );
  // After TRIM the contents are unspecified by the protocol; the file plugin punches a hole.
  const trimmed = Buffer.alloc(MiB, 0xff);
  await c.read(4 * MiB, trimmed);
  t.ok(
    trimmed.every((b) => b === 0),
    'the trimmed range reads as zeroes (file plugin punches a hole)',
  );
  t.ok(
    file.subarray(4 * MiB, 5 * MiB).every((b) => b === 0),
    'and the backing file has zeroes there',
  );
});

t.test('memory plugin: reads larger than the maximum payload are split and reassembled', async (t) => {
  const server = await startNbdkit(t, ['memory', '80M']);
  const c = await connectNbd(server.uri(), { maxInFlight: 4 });
  t.teardown(() => c.close());
  t.equal(c.info.blockSize.maximum, 32 * MiB, 'the 32 MiB default maximum payload');
  const data = randomBytes(70 * MiB);
  await c.write(MiB, data);
  const back = Buffer.alloc(70 * MiB);
  await c.read(MiB, back);
  t.ok(back.equals(data), '70 MiB written and read in 32 MiB pieces, byte-exact');
  const tail = Buffer.alloc(MiB, 1);
  await c.read(79 * MiB, tail);
  t.ok(
    tail.every((b) => b === 0),
    'never-written memory reads as zeroes',
  );
});

t.test('requests outside the export or after close are refused locally with typed errors', async (t) => {
  const server = await startNbdkit(t, ['memory', '1M']);
  const c = await connectNbd(server.uri());
  await t.rejects(c.read(MiB - 10, Buffer.alloc(11)), { code: 'E_INVALID_ARGUMENT', message: /outside the export/ });
  await t.rejects(c.write(-1, Buffer.alloc(1)), { code: 'E_INVALID_ARGUMENT' });
  await t.rejects(c.trim(0, 2 * MiB), { code: 'E_INVALID_ARGUMENT' });
  await c.read(0, Buffer.alloc(0));
  t.pass('a zero-length read resolves without a request');
  await c.close();
  t.equal(await c.closed, undefined, 'a clean close reports no error');
  await t.rejects(c.read(0, Buffer.alloc(1)), { code: 'E_NBD', message: /closed/ });
  await c.close();
  t.pass('close is harmless when repeated');
});
