import t from 'tap';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectNbd } from '../../nbd/connect.js';
import { startNbdkit, tempDir } from '../helpers/nbd-servers.js';

const N = 64;
const STRIDE = 65536;

t.test('64 concurrent reads answered in reverse order (nbdkit eval + delay filter) each get their own data', async (t) => {
  const dir = tempDir(t, 'nbd-ooo');
  const image = join(dir, 'image');
  const content = randomBytes(N * STRIDE);
  writeFileSync(image, content);
  // Read i may only finish after read i+1 has: the server answers strictly out of order, whatever
  // the timing. The delay filter adds 5 ms to every read on top.
  const pread = [
    'i=$(( $4 / 65536 ))',
    `if [ $i -lt ${N - 1} ]; then while [ ! -e ${dir}/done-$((i+1)) ]; do sleep 0.01; done; fi`,
    `dd if=${image} skip=$4 count=$3 iflag=skip_bytes,count_bytes status=none`,
    `touch ${dir}/done-$i`,
  ].join('; ');
  const server = await startNbdkit(t, [
    '-t',
    String(N),
    '--filter=delay',
    'eval',
    `get_size=echo ${N * STRIDE}`,
    `pread=${pread}`,
    'thread_model=echo parallel',
    'delay-read=5ms',
  ]);
  const c = await connectNbd(server.uri(), { maxInFlight: N });
  t.teardown(() => c.close());
  const order: number[] = [];
  const bufs = Array.from({ length: N }, (_, i) => Buffer.alloc(((i % 16) + 1) * 4096));
  await Promise.all(bufs.map((b, i) => c.read(i * STRIDE, b).then(() => order.push(i))));
  for (let i = 0; i < N; i++) {
    if (!bufs[i]!.equals(content.subarray(i * STRIDE, i * STRIDE + bufs[i]!.length))) t.fail(`read ${i} has the wrong data`);
  }
  t.pass('every read returned the bytes at its own offset');
  t.not(order[0], 0, 'the first read sent did not complete first');
  t.notSame(
    order,
    [...order].sort((a, b) => a - b),
    'replies arrived out of submission order',
  );
  t.equal(order[N - 1], 0, 'the first read sent completed last');
});

t.test('64 concurrent reads through an 8-deep pipeline queue, verified against the pattern plugin', async (t) => {
  const server = await startNbdkit(t, ['--filter=delay', 'pattern', '1G', 'delay-read=2ms']);
  const c = await connectNbd(server.uri(), { maxInFlight: 8 });
  t.teardown(() => c.close());
  const offsets = Array.from({ length: N }, (_, i) => (i * 7919 * 4096) % (1 << 30));
  const bufs = offsets.map((_, i) => Buffer.alloc(4096 * ((i % 8) + 1)));
  const reads = offsets.map((o, i) => c.read(o, bufs[i]!));
  t.equal(c.pending, N, 'all 64 requests are pending (8 on the wire, the rest queued)');
  await Promise.all(reads);
  let bad = 0;
  offsets.forEach((o, i) => {
    const b = bufs[i]!;
    // The pattern plugin: every 8-byte aligned word holds its own offset, big-endian.
    for (let k = 0; k < b.length; k += 8) if (b.readBigUInt64BE(k) !== BigInt(o + k)) bad++;
  });
  t.equal(bad, 0, 'every word holds its offset');
  t.equal(c.pending, 0);
});

t.test('writes and reads interleaved 64 at a time on the memory plugin keep their data apart', async (t) => {
  const server = await startNbdkit(t, ['--filter=delay', 'memory', '64M', 'delay-write=3ms', 'delay-read=1ms']);
  const c = await connectNbd(server.uri(), { maxInFlight: 32 });
  t.teardown(() => c.close());
  const chunks = Array.from({ length: N }, () => randomBytes(64 * 1024));
  await Promise.all(chunks.map((d, i) => c.write(i * 1024 * 1024, d)));
  const back = chunks.map((d) => Buffer.alloc(d.length));
  await Promise.all(back.map((b, i) => c.read(i * 1024 * 1024, b)));
  t.ok(
    back.every((b, i) => b.equals(chunks[i]!)),
    'each 64 KiB block reads back as written',
  );
});
