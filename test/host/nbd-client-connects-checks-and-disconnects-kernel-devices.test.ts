/**
 * nbd-client on a kernel with the nbd driver: each way of holding a device (netlink, persist,
 * foreground) connects a real /dev/nbdN to nbdkit, moves data both ways (the block device on one
 * side, the protocol client of nbd/ on the other), checks, and disconnects to nothing. This host's
 * kernel has no nbd module, so the file skips here; nbd-client-kernel-devices-pass-in-the-kernel-lab
 * runs it in the kernel lab (scripts/lab.sh --modules nbd), where a skip is a failure.
 */
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { silentLogger } from '../../host/log.js';
import { checkKernelNbd, connectKernelNbd, disconnectKernelNbd, listNbdExports, type KernelNbdDevice } from '../../host/nbd-client.js';
import { isAlive } from '../../host/daemon.js';
import { connectNbd } from '../../nbd/connect.js';
import { startNbdkit, type NbdServer } from '../helpers/nbd-servers.js';

const MiB = 1024 * 1024;
const skip =
  !existsSync('/sys/module/nbd') && 'this kernel has no nbd driver (the kernel lab runs this file: scripts/lab.sh --modules nbd)';

function deviceIo(dev: string, op: 'read' | 'write', buf: Buffer, offset: number): void {
  const fd = openSync(dev, op === 'read' ? 'r' : 'r+');
  try {
    if (op === 'write') {
      writeSync(fd, buf, 0, buf.length, offset);
      fsyncSync(fd);
    } else readSync(fd, buf, 0, buf.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** Data written through the device is in the export; data written to the export is read through the device. */
async function roundTrip(t: Test, server: NbdServer, dev: KernelNbdDevice): Promise<void> {
  const a = randomBytes(MiB);
  deviceIo(dev.device, 'write', a, 4 * MiB);
  const c = await connectNbd(server.uri());
  const back = Buffer.alloc(MiB);
  await c.read(4 * MiB, back);
  t.ok(back.equals(a), `${dev.mode}: a write to ${dev.device} reaches the export`);
  const b = randomBytes(MiB);
  await c.write(8 * MiB, b, { fua: true });
  await c.close();
  const seen = Buffer.alloc(MiB);
  deviceIo(dev.device, 'read', seen, 8 * MiB);
  t.ok(seen.equals(b), `${dev.mode}: a write to the export is read through ${dev.device}`);
}

t.test('netlink (default): the kernel picks the device; sizes, block size, I/O, check, disconnect', { skip }, async (t) => {
  const server = await startNbdkit(t, ['memory', '64M']);
  const dev = await connectKernelNbd({ server: { unix: server.socket }, exportName: '', blockSize: 4096, timeoutS: 60 });
  t.teardown(() => disconnectKernelNbd(dev).catch(() => {}));
  t.match(dev, { mode: 'netlink', device: /^\/dev\/nbd\d+$/ });
  t.equal(dev.client, undefined, 'no process holds a netlink device');
  t.match(await checkKernelNbd(dev), { connected: true, sizeBytes: 64 * MiB });
  t.equal(readFileSync(`/sys/block/nbd${dev.index}/queue/logical_block_size`, 'utf8').trim(), '4096', 'block size 4096');
  await roundTrip(t, server, dev);
  await disconnectKernelNbd(dev);
  t.match(await checkKernelNbd(dev), { connected: false }, 'disconnected');
  await disconnectKernelNbd(dev);
  t.pass('disconnect is harmless when repeated');
});

t.test('persist: a daemon of nbd-client holds the device; its pid is the sysfs pid; disconnect ends it', { skip }, async (t) => {
  const server = await startNbdkit(t, ['memory', '32M']);
  const dev = await connectKernelNbd({ server: { unix: server.socket }, exportName: '', mode: 'persist', readOnly: false });
  t.teardown(() => disconnectKernelNbd(dev).catch(() => {}));
  t.ok(dev.client && isAlive(dev.client), 'the recorded client is alive');
  t.match(await checkKernelNbd(dev), { connected: true, client: 'alive', pid: dev.client!.pid });
  await roundTrip(t, server, dev);
  await disconnectKernelNbd(dev);
  t.match(await checkKernelNbd(dev), { connected: false, client: 'gone' });
  t.notOk(isAlive(dev.client!), 'the daemon is gone');
});

t.test('foreground: the device lives as long as the supervised nbd-client; killing it disconnects', { skip }, async (t) => {
  const server = await startNbdkit(t, [
    '--filter=exportname',
    'memory',
    '16M',
    'exportname=vol',
    'exportname-list=explicit',
    'exportname-strict=true',
  ]);
  const dev = await connectKernelNbd({ server: { unix: server.socket }, exportName: 'vol', mode: 'foreground', log: silentLogger() });
  t.teardown(() => disconnectKernelNbd(dev).catch(() => {}));
  t.match(await checkKernelNbd(dev), { connected: true, client: 'alive', sizeBytes: 16 * MiB });
  dev.daemon!.signal('SIGKILL');
  await dev.daemon!.exited;
  let st = await checkKernelNbd(dev);
  for (let i = 0; i < 100 && st.pid !== undefined; i++) {
    await new Promise((r) => setTimeout(r, 100));
    st = await checkKernelNbd(dev);
  }
  t.match(st, { connected: false, client: 'gone' }, 'the kernel dropped the device with its client');
  t.same(await listNbdExports({ unix: server.socket }), [{ name: 'vol' }], 'nbd-client -list');
  await t.rejects(
    connectKernelNbd({ server: { unix: server.socket }, exportName: 'nope' }),
    { code: 'E_NBD' },
    'an export the server lacks',
  );
});
