import t from 'tap';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QmpClient, QmpError, type QmpEvent } from '../../../../runtime-core/hypervisor/qemu/qmp-client.js';
import { startTestQemu } from '../../../helpers/qemu-test-vm.js';

const qemuVersion = /version (\d+)\.(\d+)\.(\d+)/.exec(execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }))!;

t.test('handshake, greeting and query-status against a paused QEMU', async (t) => {
  const q = startTestQemu(t, ['-S']);
  const c = await QmpClient.connect(q.qmpPath);
  t.teardown(() => c.close());
  t.same(
    c.greeting!.QMP.version.qemu,
    { major: Number(qemuVersion[1]), minor: Number(qemuVersion[2]), micro: Number(qemuVersion[3]) },
    'greeting carries the version of the binary',
  );
  t.same(await c.execute('query-status'), { status: 'prelaunch', singlestep: false, running: false });
  // Commands are only accepted after qmp_capabilities: this one working proves the handshake happened.
  const name = await c.execute<{ name?: string }>('query-name');
  t.same(name, {});
});

t.test('events arrive on the emitter and through waitEvent', async (t) => {
  const q = startTestQemu(t, ['-S']);
  const c = await QmpClient.connect(q.qmpPath);
  t.teardown(() => c.close());
  const seen: string[] = [];
  c.on('event', (e: QmpEvent) => seen.push(e.event));
  const resumed = c.waitEvent('RESUME', undefined, 5000);
  await c.execute('cont');
  const ev = await resumed;
  t.equal(ev.event, 'RESUME');
  t.type(ev.timestamp?.seconds, 'number');
  const stopped = c.waitEvent('STOP', undefined, 5000);
  await c.execute('stop');
  await stopped;
  t.same(seen, ['RESUME', 'STOP']);
  t.same(await c.execute('query-status'), { status: 'paused', singlestep: false, running: false });
});

t.test('blockdev-add, device_add on a root port, device_del waits for DEVICE_DELETED, blockdev-del', async (t) => {
  // No guest OS here, so ACPI hotplug would wait forever for the guest to eject. With native PCIe
  // hotplug and a slot the firmware never powered, QEMU completes the unplug itself.
  const q = startTestQemu(t, [
    '-global',
    'ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off',
    '-device',
    'pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1,addr=0x10',
  ]);
  const disk = join(q.dir, 'disk.raw');
  writeFileSync(disk, Buffer.alloc(1024 * 1024));
  const c = await QmpClient.connect(q.qmpPath);
  t.teardown(() => c.close());
  await c.execute('blockdev-add', { 'node-name': 'drive-t1', driver: 'raw', 'read-only': true, file: { driver: 'file', filename: disk } });
  await c.execute('device_add', { driver: 'virtio-blk-pci', id: 'dev-t1', drive: 'drive-t1', bus: 'rp0', addr: '0' });
  const pci = await c.execute<{ devices: { slot: number; qdev_id: string }[] }[]>('query-pci');
  t.equal(pci[0]!.devices.find((d) => d.qdev_id === 'rp0')?.slot, 0x10, 'root port at slot 0x10');
  const peripherals = async (): Promise<string[]> =>
    (await c.execute<{ name: string }[]>('qom-list', { path: '/machine/peripheral' })).map((p) => p.name);
  t.ok((await peripherals()).includes('dev-t1'), 'the disk device exists');

  const deleted = c.waitEvent('DEVICE_DELETED', (e) => e.data?.device === 'dev-t1', 10_000);
  await c.execute('device_del', { id: 'dev-t1' });
  const ev = await deleted;
  t.equal(ev.data?.device, 'dev-t1');
  t.notOk((await peripherals()).includes('dev-t1'), 'the disk device is gone');
  await c.execute('blockdev-del', { 'node-name': 'drive-t1' });
  const blocks = await c.execute<{ 'node-name': string }[]>('query-named-block-nodes');
  t.notOk(
    blocks.some((b) => b['node-name'] === 'drive-t1'),
    'block node gone',
  );
});

t.test('QEMU errors are QmpError (E_QMP) with class and description', async (t) => {
  const q = startTestQemu(t, ['-S', '-device', 'pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1,addr=0x10']);
  const c = await QmpClient.connect(q.qmpPath);
  t.teardown(() => c.close());
  const e1 = await c.execute('no-such-command').catch((e: unknown) => e);
  t.ok(e1 instanceof QmpError);
  t.match(e1, { code: 'E_QMP', qmpClass: 'CommandNotFound', command: 'no-such-command', desc: /no-such-command/ });
  const e2 = await c
    .execute('device_add', { driver: 'virtio-blk-pci', id: 'x', drive: 'missing-drive', bus: 'rp0' })
    .catch((e: unknown) => e);
  t.match(e2, { code: 'E_QMP', qmpClass: 'GenericError', desc: /missing-drive/ });
  t.match((e2 as Error).message, /^QMP device_add failed: GenericError: /);
  const e3 = await c.execute('device_del', { id: 'nothing-here' }).catch((e: unknown) => e);
  t.match(e3, { code: 'E_QMP', qmpClass: 'DeviceNotFound' });
  t.same(await c.execute('query-status'), { status: 'prelaunch', singlestep: false, running: false }, 'the connection is still usable');
});

t.test('connect retries until QEMU has created the socket', async (t) => {
  const q = startTestQemu(t, ['-S'], { delayMs: 400 });
  const c = await QmpClient.connect(q.qmpPath, { connectTimeoutMs: 15_000 });
  t.teardown(() => c.close());
  t.ok(c.greeting);
});

t.test('connect gives up after its timeout when no QEMU comes', async (t) => {
  await t.rejects(QmpClient.connect('/tmp/krt-no-such-dir/qmp.sock', { connectTimeoutMs: 150 }), {
    code: 'E_TIMEOUT',
    message: /did not accept a connection within 150 ms \(last error ENOENT\)/,
  });
});

t.test('connect stops retrying when told to (e.g. QEMU exited)', async (t) => {
  const ac = new AbortController();
  setTimeout(() => ac.abort('qemu exited with status 1'), 50);
  await t.rejects(QmpClient.connect('/tmp/krt-no-such-dir/qmp.sock', { connectTimeoutMs: 10_000, signal: ac.signal }), {
    code: 'E_QMP',
    message: /qemu exited with status 1/,
  });
});

t.test('QEMU dying fails pending waits as Disconnected; quit closes the connection', async (t) => {
  const q = startTestQemu(t, ['-S']);
  const c = await QmpClient.connect(q.qmpPath);
  const never = c.waitEvent('DEVICE_DELETED', undefined, 30_000);
  process.kill(q.pid, 'SIGKILL');
  await t.rejects(never, { code: 'E_QMP', qmpClass: 'Disconnected' });
  await c.whenClosed;
  t.ok(c.closed);
  await t.rejects(c.execute('query-status'), { code: 'E_QMP', qmpClass: 'Disconnected' });

  const q2 = startTestQemu(t, ['-S']);
  const c2 = await QmpClient.connect(q2.qmpPath);
  const shutdown = c2.waitEvent('SHUTDOWN', undefined, 5000);
  await c2.execute('quit');
  t.match((await shutdown).data, { guest: false });
  await c2.whenClosed;
  t.same(await q2.exited, { code: 0, signal: null }, 'QEMU exits 0 after quit');
});
